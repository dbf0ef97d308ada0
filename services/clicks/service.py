"""The clicks service. Click ingestion, periods and counters arrive with the click-path issue;
for now it owns its schema and answers health checks."""
from sqlalchemy import select

from services.common.db import Database
from services.common.rpc import rpc


class ClicksService:
    name = "clicks"

    db = Database("CLICKS_DATABASE_URL")

    @rpc
    def health(self):
        self.db.execute(select(1))
        return {"service": "clicks", "ok": True}
