"""The payouts worker: pays requested payouts through the payment provider and records the outcome.

It runs as its own nameko service and process (``python -m services.settlement.run_payouts``) so
it can scale and fail apart from the settlement service. A payout is never paid twice: the
provider dedupes by the payout's reference, and the outcome is recorded under a row lock only
while the payout is still ``requested``. If the worker dies between "paid" and "recorded", the
unacknowledged ``payout.requested`` is delivered again, the provider answers with the payment it
already made, and the outcome is recorded once. A sweep every 30 seconds picks up payouts whose
event was lost, and those the provider answered with an error (tried again until
``money_flows.PROVIDER_ERROR_PATIENCE`` has passed, then failed back to the creator's revenue).
"""
from __future__ import annotations

import logging

from nameko.timer import timer
from sqlalchemy import text

from services.common.db import Database
from services.common.events import subscriber
from services.common.outbox import Outbox
from services.common.rpc import rpc
from services.settlement import money_flows
from services.settlement.models import outbox
from services.settlement.service import PaymentProvider

log = logging.getLogger(__name__)

SWEEP_SECONDS = 30
STALE_AFTER_SECONDS = 60


class PayoutsService:
    name = "payouts"

    db = Database("SETTLEMENT_DATABASE_URL")
    events = Outbox("settlement", "SETTLEMENT_DATABASE_URL", outbox)
    provider = PaymentProvider()

    @rpc
    def health(self):
        self.db.execute(text("SELECT 1"))
        return {"service": "payouts", "ok": True}

    def _pay(self, payout_id: int) -> None:
        row = self.db.execute(
            text("SELECT amount, state FROM settlement.payouts WHERE id = :i"), {"i": payout_id}
        ).first()
        self.db.rollback()  # hold no transaction open while the provider works
        if row is None or row.state != "requested":
            return
        result = self.provider.pay(f"payout-{payout_id}", row.amount)
        money_flows.settle_payout(self.db, self.events, payout_id, result)
        self.db.commit()

    @subscriber("settlement", "payout.requested")
    def on_payout_requested(self, event):
        self._pay(event["data"]["payout_id"])

    @timer(interval=SWEEP_SECONDS)
    def sweep(self):
        """Payouts still requested long after their event: the event was lost or its worker died."""
        stale = self.db.execute(
            text(
                "SELECT id FROM settlement.payouts WHERE state = 'requested' "
                f"AND created_at < now() - interval '{STALE_AFTER_SECONDS} seconds' ORDER BY id LIMIT 100"
            )
        ).scalars().all()
        for payout_id in stale:
            try:
                self._pay(payout_id)
            except Exception:
                log.exception("payout %s could not be settled; the next sweep retries", payout_id)
                self.db.rollback()
