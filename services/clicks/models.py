"""Tables of the clicks service (schema ``clicks``)."""
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from services.common.outbox import outbox_table

SCHEMA = "clicks"


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


outbox = outbox_table(Base.metadata)
