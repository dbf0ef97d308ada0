"""The settlement service: the ledger, wallets and means, deposits, revenue, payouts and adjustments."""
from __future__ import annotations

from nameko.dependency_providers import Config
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy
from nameko.timer import timer
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from services.common.db import Database
from services.common.errors import Conflict, InvalidParameters, NotFound
from services.common.events import first_seen, subscriber
from services.common.money import CURRENCY, Money
from services.common.outbox import Outbox
from services.common.rpc import rpc
from services.common.settings import setting
from services.settlement import adjustments, batch, closing, deposits, escrow, ledger, money_flows, overview, owners, rules, statements
from services.settlement.models import Payout, outbox
from services.settlement.providers import provider_for


class PaymentProvider(DependencyProvider):
    """The configured payment-provider adapter (``PAYMENT_PROVIDER``)."""

    def setup(self):
        config = self.container.config
        self.provider = provider_for(setting(config, "PAYMENT_PROVIDER"), setting(config, "SETTLEMENT_DATABASE_URL"))

    def get_dependency(self, worker_ctx):
        return self.provider


class SettlementService:
    name = "settlement"

    db = Database("SETTLEMENT_DATABASE_URL")
    events = Outbox("settlement", "SETTLEMENT_DATABASE_URL", outbox)
    provider = PaymentProvider()
    config = Config()
    accounts = RpcProxy("accounts")

    @rpc
    def health(self):
        self.db.execute(select(1))
        return {"service": "settlement", "ok": True}

    # -- replicas fed by events ----------------------------------------------------------------

    @subscriber("accounts", "budget.changed")
    def on_budget_changed(self, event):
        if not first_seen(self.db, "settlement", event, "budget.changed"):
            return
        data = event["data"]
        # a late, older change never overwrites a newer one
        self.db.execute(
            text(
                "INSERT INTO settlement.budgets (user_id, amount, changed_at) VALUES (:u, :a, :t) "
                "ON CONFLICT (user_id) DO UPDATE SET amount = EXCLUDED.amount, changed_at = EXCLUDED.changed_at "
                "WHERE settlement.budgets.changed_at < EXCLUDED.changed_at"
            ),
            {"u": data["user_id"], "a": data["budget"], "t": event["occurred_at"]},
        )
        # the settlement charges the budget in force when the period was sealed
        self.db.execute(
            text("INSERT INTO settlement.budget_changes (user_id, amount, changed_at) VALUES (:u, :a, :t)"),
            {"u": data["user_id"], "a": data["budget"], "t": event["occurred_at"]},
        )
        money_flows.refresh_means(self.db, self.events, data["user_id"])
        self.db.commit()

    def _thing_event(self, event, deleted=False):
        if first_seen(self.db, "settlement", event, event["type"]):
            owners.apply_event(self.db, event, deleted)
        self.db.commit()

    @subscriber("accounts", "thing.created")
    def on_thing_created(self, event):
        self._thing_event(event)

    @subscriber("accounts", "thing.updated")
    def on_thing_updated(self, event):
        self._thing_event(event)

    @subscriber("accounts", "thing.deleted")
    def on_thing_deleted(self, event):
        self._thing_event(event, deleted=True)

    @subscriber("accounts", "thing.claimed")
    def on_thing_claimed(self, event):
        """The thing's owner changed, or was verified: a verified owner gets its escrow."""
        escrow.lock(self.db)
        if first_seen(self.db, "settlement", event, "thing.claimed"):
            owners.apply_event(self.db, event, deleted=False)
            escrow.release_owned(self.db, self.events, [event["data"]["thing_id"]])
        self.db.commit()

    # -- wallets and deposits ------------------------------------------------------------------

    @rpc
    def wallet(self, user_id):
        balance = ledger.balance(self.db, "wallet", user_id).cents
        budget = money_flows.budget_of(self.db, user_id)
        return {"balance": balance, "budget": budget, "currency": CURRENCY, "has_means": rules.has_means(budget, balance)}

    @rpc
    def means_of(self, user_ids):
        """``{user_id: has_means}`` for readers the click path has not heard of yet."""
        if not isinstance(user_ids, list) or len(user_ids) > 1000:
            raise InvalidParameters("up to 1000 user ids")
        rows = self.db.execute(
            text(
                "SELECT u.id, b.amount AS budget, coalesce(a.balance, 0) AS balance FROM unnest(CAST(:ids AS bigint[])) AS u(id) "
                "LEFT JOIN settlement.budgets b ON b.user_id = u.id "
                "LEFT JOIN settlement.ledger_accounts a ON a.kind = 'wallet' AND a.owner_id = u.id"
            ),
            {"ids": user_ids},
        )
        return {str(r.id): rules.has_means(r.budget, r.balance) for r in rows}

    @rpc
    def deposit(self, user_id, amount, idempotency_key):
        """Fund a wallet through the payment provider (``deposits``: pending first)."""
        amount = rules.amount(amount, minimum=1, maximum=int(setting(self.config, "MAX_DEPOSIT_CENTS")))
        key = rules.idempotency_key(idempotency_key)
        found, created = deposits.deposit(self.db, self.events, self.provider, user_id, amount, key)
        return {"deposit": deposits.as_dict(found), "created": created}

    @rpc
    def reconcile_deposits(self, older_than_seconds=deposits.ABANDONED_AFTER_SECONDS):
        """Deposits left pending by a crash, completed or removed by the provider's record of
        them. Runs on a timer; safe in every replica at once."""
        return deposits.complete_pending(self.db, self.events, self.provider, older_than_seconds)

    @rpc
    def deposits_check(self):
        """Every deposit against the payment provider's records: ``ok``, and the differences."""
        return deposits.compare_with_provider(self.db, self.provider)

    @timer(interval=30)
    def reconcile_pending_deposits(self):
        self.reconcile_deposits()

    # -- revenue and payouts -------------------------------------------------------------------

    @rpc
    def revenue(self, user_id):
        return {
            "balance": ledger.balance(self.db, "revenue", user_id).cents,
            "currency": CURRENCY,
            "periods": statements.revenue_by_period(self.db, user_id),
        }

    # -- settlements, statements, escrow -----------------------------------------------------------

    @rpc
    def settlement(self, period):
        found = batch.status(self.db, period)
        if found is None:
            raise NotFound("no settlement of this period")
        return found

    @rpc
    def settlement_states(self, periods):
        """``{period: state}`` for the periods settlement has heard of."""
        if not isinstance(periods, list) or len(periods) > 1000:
            raise InvalidParameters("up to 1000 periods")
        rows = self.db.execute(
            text("SELECT period, state FROM settlement.settlements WHERE period = ANY(CAST(:p AS text[]))"), {"p": periods}
        )
        return {r.period: r.state for r in rows}

    @rpc
    def statement(self, user_id, period):
        found = statements.statement(self.db, user_id, period)
        if found is None:
            raise NotFound("no settled period with this id")
        return found

    @rpc
    def refund_stale_escrow(self, older_than_days=None):
        """Escrow held longer than the hold period goes back to the readers (once across replicas:
        the escrow lock, and each credit leaves escrow once)."""
        days = int(setting(self.config, "ESCROW_HOLD_DAYS")) if older_than_days is None else older_than_days
        if not isinstance(days, int) or isinstance(days, bool) or days < 0:
            raise InvalidParameters("older_than_days must be a whole number of days, 0 or more")
        escrow.learn_owners_of_stale(self.db, self.accounts.thing_owners, days)
        escrow.lock(self.db)
        refunded = escrow.refund_stale(self.db, self.events, days)
        self.db.commit()
        return {"refunded": refunded, "count": len(refunded), "amount": sum(r["amount"] for r in refunded), "currency": CURRENCY}

    @timer(interval=3600)
    def refund_escrow_hourly(self):
        self.refund_stale_escrow()

    @rpc
    def request_payout(self, user_id, amount, idempotency_key):
        minimum = int(setting(self.config, "MIN_PAYOUT_CENTS"))
        amount = rules.amount(amount, minimum=minimum)
        key = rules.idempotency_key(idempotency_key)
        existing = self.db.scalar(select(Payout).where(Payout.user_id == user_id, Payout.idempotency_key == key))
        if existing is not None:
            if existing.amount != amount.cents:
                raise Conflict("this idempotency_key was used for a payout of another amount")
            return {"payout": money_flows.payout_dict(existing), "created": False}
        try:
            payout = money_flows.request_payout(self.db, self.events, user_id, amount, key)
            self.db.commit()
        except IntegrityError:
            self.db.rollback()
            existing = self.db.scalar(select(Payout).where(Payout.user_id == user_id, Payout.idempotency_key == key))
            if existing is None or existing.amount != amount.cents:
                raise Conflict("this idempotency_key was used for a payout of another amount") from None
            return {"payout": money_flows.payout_dict(existing), "created": False}
        return {"payout": money_flows.payout_dict(payout), "created": True}

    @rpc
    def payouts(self, user_id):
        rows = self.db.scalars(select(Payout).where(Payout.user_id == user_id).order_by(Payout.id.desc()))
        return [money_flows.payout_dict(p) for p in rows]

    @rpc
    def payout(self, user_id, payout_id):
        found = self.db.scalar(select(Payout).where(Payout.id == payout_id, Payout.user_id == user_id))
        if found is None:
            # someone else's payout is as invisible as one that does not exist
            raise NotFound("no such payout")
        return money_flows.payout_dict(found)

    # -- operators ----------------------------------------------------------------------------------

    @rpc
    def adjust(self, kind, owner_id, amount, reason, actor, idempotency_key):
        """An audited correction of a user's wallet or revenue (``adjustments``); ``actor`` is named
        by the caller from its own credential, never by whoever asked it."""
        if not isinstance(owner_id, int) or isinstance(owner_id, bool):
            raise InvalidParameters("owner_id must be an integer")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
            raise InvalidParameters("amount must be a non-zero integer number of cents")
        key = rules.idempotency_key(idempotency_key)
        transaction_id, created = adjustments.adjust(self.db, self.events, kind, owner_id, Money(amount), reason, actor, key)
        self.db.commit()
        return {"transaction_id": transaction_id, "created": created, "balance": ledger.balance(self.db, kind, owner_id).cents}

    @rpc
    def ledger_check(self):
        return ledger.check(self.db)

    # -- for the web pages, the notices and the data export ----------------------------------------

    @rpc
    def projected_period(self, user_id, thing_ids):
        """What the open period would charge the reader, and each of ``thing_ids`` (their clicks
        this period) would get, were it settled now with today's budget and wallet."""
        if not isinstance(thing_ids, list) or len(thing_ids) > 10000 or not all(isinstance(i, int) for i in thing_ids):
            raise InvalidParameters("up to 10000 thing ids")
        return overview.projected_period(
            self.db, user_id, sorted(set(thing_ids)),
            rules.fee_basis_points(setting(self.config, "SETTLEMENT_FEE_BPS")),
            rules.settlement_policy(setting(self.config, "SETTLEMENT_NO_CLICKS_POLICY")),
        )

    @rpc
    def statement_periods(self, user_id):
        return overview.statement_periods(self.db, user_id)

    @rpc
    def escrow_of_things(self, thing_ids):
        if not isinstance(thing_ids, list) or len(thing_ids) > 1000:
            raise InvalidParameters("up to 1000 thing ids")
        return overview.escrow_of_things(self.db, thing_ids)

    @rpc
    def payout_terms(self):
        return {"minimum": int(setting(self.config, "MIN_PAYOUT_CENTS")), "currency": CURRENCY}

    @rpc
    def period_notices(self, period, after=None, limit=1000):
        if not isinstance(limit, int) or not 1 <= limit <= 5000:
            raise InvalidParameters("limit is 1 to 5000")
        return overview.period_notices(self.db, period, after, limit)

    @rpc
    def export_user(self, user_id):
        return overview.export(self.db, user_id)

    # -- closed accounts ----------------------------------------------------------------------------

    @subscriber("accounts", "user.deleted")
    def on_user_deleted(self, event):
        if first_seen(self.db, "settlement", event, "user.deleted"):
            closing.remember(self.db, event["data"]["user_id"], event["occurred_at"])
        self.db.commit()

    @rpc
    def pay_out_closed_accounts(self):
        """Final payouts of closed accounts whose last period is settled (each once: row locks and
        the payout's idempotency key)."""
        paid = []
        for user_id in closing.due(self.db):
            paid.append(closing.pay_out(self.db, self.events, user_id))
        self.db.commit()
        return [p for p in paid if p is not None]

    @timer(interval=60)
    def pay_out_closed_accounts_every_minute(self):
        self.pay_out_closed_accounts()
