"""The settlement batch runner: settles each period once it is sealed.

It runs as its own nameko service and process (``python -m services.settlement.run_batch``), one
active at a time by design: the batch takes a database lock, so a second replica only stands by.
Keeping it apart from the ``settlement`` service means a long batch never slows deposits, wallets
or payouts. The batch itself is ``services.settlement.batch``.
"""
from __future__ import annotations

import logging
import time

import eventlet

from nameko.dependency_providers import Config
from nameko.rpc import RpcProxy
from nameko.timer import timer
from sqlalchemy import text

from services.common import topology
from services.common.db import Database, engine_for
from services.common.events import subscriber
from services.common.rpc import rpc
from services.common.settings import setting
from services.settlement import batch, rules

log = logging.getLogger(__name__)

RETRIES = 10
RETRY_PAUSE_SECONDS = 60
# how long the settlement of a period just sealed waits for budget changes still on their way
# (the resume timer tries again after that); and a pause for the ones still in accounts' outbox
CATCH_UP_SECONDS = 20
BUDGET_GRACE_SECONDS = 1.0


def log_progress(step: str, done: int, total: int) -> None:
    log.info("settlement %s: %s of %s", step, done, total)


class SettlementBatchService:
    name = "settlement_batch"

    db = Database("SETTLEMENT_DATABASE_URL")
    clicks = RpcProxy("clicks")
    accounts = RpcProxy("accounts")
    config = Config()

    @rpc
    def health(self):
        self.db.execute(text("SELECT 1"))
        return {"service": "settlement_batch", "ok": True}

    def _batch(self) -> batch.Batch:
        return batch.Batch(
            engine_for(self.config["SETTLEMENT_DATABASE_URL"]),
            batch.Sources(export_clicks=self.clicks.export_clicks, thing_owners=self.accounts.thing_owners),
            chunk_rows=int(setting(self.config, "SETTLEMENT_CHUNK_ROWS")),
            progress=log_progress,
        )

    def _budget_changes_waiting(self) -> int:
        """Budget changes queued for the settlement service and not yet applied to the budget
        replica the batch charges from (settlement down or catching up after a restart)."""
        from kombu import Connection

        queue = topology.handler_queue("accounts", "budget.changed", "settlement", "on_budget_changed")
        with Connection(self.config["AMQP_URI"], connect_timeout=5) as conn:
            return queue(conn.default_channel).queue_declare(passive=True).message_count

    def _budget_changes_unsent(self, period: str) -> int:
        """Budget changes made before ``period``'s seal still in accounts' outbox (the broker was
        away when they were made, or accounts' relay has not run yet)."""
        sealed_at = self.db.execute(text("SELECT sealed_at FROM settlement.settlements WHERE period = :p"), {"p": period}).scalar()
        self.db.rollback()
        if sealed_at is None:
            return 0
        return self.accounts.budget_changes_unsent(sealed_at.isoformat())

    def _caught_up(self, period: str, patience: float) -> bool:
        """Whether the budgets in force at the seal have all reached the replica: the budget that
        counts is the one in force when the period was sealed, and a change made just before the
        seal may still be on its way: in accounts' outbox while the broker was away, or queued
        for settlement while it was down."""
        deadline = time.monotonic() + patience
        while True:
            try:
                waiting = self._budget_changes_unsent(period) + self._budget_changes_waiting()
            except Exception as exc:  # the broker or accounts is away: wait for them, as for the changes
                log.info("cannot tell whether budget changes are on their way (%s); settling %s later", exc, period)
                return False
            if waiting == 0:
                return True
            if time.monotonic() > deadline:
                log.info("%s budget changes still on their way to settlement; settling %s later", waiting, period)
                return False
            eventlet.sleep(0.5)

    def _settle(self, period: str, patience: float = 0.0) -> dict | None:
        # an event published just before the seal is relayed within a poll of the outbox
        eventlet.sleep(BUDGET_GRACE_SECONDS)
        if not self._caught_up(period, patience):
            return None  # still pending: the next resume() tries again
        try:
            return self._batch().run(period)
        except batch.SettlementFailed as exc:
            # recorded as failed with the reason; an operator re-runs it (ops settle)
            log.error("settlement of %s failed: %s", period, exc)
            return None

    @subscriber("clicks", "period.sealed")
    def on_period_sealed(self, event):
        data = event["data"]
        batch.begin(
            self.db,
            data["period"],
            data.get("sealed_at") or event["occurred_at"],
            data["clicks"],
            rules.settlement_policy(setting(self.config, "SETTLEMENT_NO_CLICKS_POLICY")),
            rules.fee_basis_points(setting(self.config, "SETTLEMENT_FEE_BPS")),
        )
        self.db.commit()
        self._settle(data["period"], patience=CATCH_UP_SECONDS)

    @rpc
    def settle(self, period):
        """Run (or finish) the settlement of a begun period now; its status."""
        return self._settle(period)

    @timer(interval=30)
    def resume(self):
        """Settlements a crash left unfinished, and failed ones again after a pause (a wallet
        debited while the batch ran, a service that did not answer): up to ``RETRIES`` attempts,
        then an operator's ``ops settle``. While a batch runs, the others find it locked."""
        unfinished = self.db.execute(
            text(
                "SELECT period FROM settlement.settlements WHERE state IN ('pending', 'settling') "
                "OR (state = 'failed' AND attempts < :retries AND updated_at < now() - make_interval(secs => :pause)) "
                "ORDER BY sealed_at, period"
            ),
            {"retries": RETRIES, "pause": RETRY_PAUSE_SECONDS},
        ).scalars().all()
        self.db.rollback()
        for period in unfinished:
            self._settle(period)
