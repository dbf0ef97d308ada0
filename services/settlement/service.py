"""The settlement service. The ledger, deposits, payouts and the period batch arrive with their
issues; for now it owns its schema and answers health checks."""
from sqlalchemy import select

from services.common.db import Database
from services.common.rpc import rpc


class SettlementService:
    name = "settlement"

    db = Database("SETTLEMENT_DATABASE_URL")

    @rpc
    def health(self):
        self.db.execute(select(1))
        return {"service": "settlement", "ok": True}
