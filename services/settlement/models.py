"""Tables of the settlement service (schema ``settlement``)."""
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from services.common.outbox import outbox_table

SCHEMA = "settlement"


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


outbox = outbox_table(Base.metadata)
