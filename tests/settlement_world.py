"""A small sealed period for settlement tests, and the settlement it must produce, worked out
independently in Python from the rules (``services.settlement.rules``).

Wallets are funded through the real deposit flow (the sandbox provider); the budgets and things replicas are written as
their events would write them; the clicks go into the clicks service's tables as the workers
would have committed them, in a sealed period.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.clicks import periods
from services.common.money import Money
from services.common.outbox import TableRecorder
from services.settlement import deposits, rules
from services.settlement.batch import Sources
from services.settlement.models import outbox
from services.settlement.providers import SandboxProvider
from tests.factories import sealed_click_period

PERIOD = "2026-10"
SEALED_AT = "2026-11-01T00:00:00+00:00"


@dataclass
class World:
    # reader -> (budget, deposit)
    readers: dict[int, tuple[int, int]]
    # thing -> owner (None: unclaimed)
    things: dict[int, int | None]
    clicks: list[tuple[int, int]]
    unverified: set[int] = field(default_factory=set)  # things whose owner has not proven the ownership
    fee_bps: int = 1000
    period: str = PERIOD
    extra_budgets: dict[int, tuple[int, int]] = field(default_factory=dict)  # readers without clicks

    def seed(self, session: Session) -> None:
        recorder = TableRecorder(outbox)
        provider = SandboxProvider(session.get_bind().url.render_as_string(hide_password=False))
        for user_id, (budget, deposit) in {**self.readers, **self.extra_budgets}.items():
            session.execute(
                text("INSERT INTO settlement.budgets (user_id, amount, changed_at) VALUES (:u, :a, '2026-10-01')"), {"u": user_id, "a": budget}
            )
            session.execute(
                text("INSERT INTO settlement.budget_changes (user_id, amount, changed_at) VALUES (:u, :a, '2026-10-01')"),
                {"u": user_id, "a": budget},
            )
            if deposit:
                deposits.deposit(session, recorder, provider, user_id, Money(deposit), f"seed-{user_id}")
        for thing_id, owner in self.things.items():
            session.execute(
                text("INSERT INTO settlement.things (thing_id, owner_id, verified, changed_at) VALUES (:t, :o, :v, '2026-10-01')"),
                {"t": thing_id, "o": owner, "v": owner is not None and thing_id not in self.unverified},
            )
        sealed_click_period(session, self.period, "2026-10-01", SEALED_AT)
        for user_id, thing_id in self.clicks:
            session.execute(
                text("INSERT INTO clicks.clicks (period_id, user_id, thing_id, request_id) VALUES (:p, :u, :t, gen_random_uuid())"),
                {"p": self.period, "u": user_id, "t": thing_id},
            )
        session.commit()

    # -- what the settlement must do ------------------------------------------------------------

    def expected(self, policy: str = "rollover") -> dict:
        """Account deltas ``{(kind, owner): cents}`` and per-reader shares, from the rules: a share
        goes to a verified owner's revenue, to the reader's own wallet when the thing is theirs,
        else to the thing's escrow."""
        deltas: Counter = Counter()
        shares: dict[int, dict[int, int]] = {}
        by_reader = defaultdict(list)
        for user_id, thing_id in self.clicks:
            by_reader[user_id].append(thing_id)
        for user_id, thing_ids in by_reader.items():
            budget, deposit = self.readers[user_id]
            amount = rules.charge_amount(budget, deposit)
            fee = rules.platform_fee(amount, self.fee_bps)
            split = rules.split_shares(amount - fee, thing_ids, user_id)
            assert sum(split.values()) == amount - fee
            shares[user_id] = split
            deltas[("wallet", user_id)] -= amount
            deltas[("fees", None)] += fee
            for thing_id, share in split.items():
                owner = self.things.get(thing_id)
                if owner == user_id:
                    deltas[("wallet", user_id)] += share
                elif owner is not None and thing_id not in self.unverified:
                    deltas[("revenue", owner)] += share
                else:
                    deltas[("escrow", thing_id)] += share
        if policy == "charity":
            for user_id, (budget, deposit) in self.extra_budgets.items():
                amount = rules.charge_amount(budget, deposit)
                deltas[("wallet", user_id)] -= amount
                deltas[("charity", None)] += amount
        return {"deltas": {k: v for k, v in deltas.items() if v}, "shares": shares}


def sources(engine) -> Sources:
    """The batch's sources read straight from the clicks tables of the test database."""

    def export_clicks(period, after, limit):
        with Session(engine) as session:
            return periods.export_page(session, period, after, limit)

    return Sources(export_clicks=export_clicks, thing_owners=lambda ids: {})


def settlement_postings(session: Session, period: str = PERIOD) -> dict:
    """The settlement transaction's postings as ``{(kind, owner): cents}``."""
    rows = session.execute(
        text(
            "SELECT a.kind, a.owner_id, sum(p.amount) AS amount FROM settlement.postings p "
            "JOIN settlement.transactions t ON t.id = p.transaction_id JOIN settlement.ledger_accounts a ON a.id = p.account_id "
            "WHERE t.idempotency_key = :k GROUP BY a.kind, a.owner_id"
        ),
        {"k": f"settlement:{period}"},
    )
    return {(r.kind, r.owner_id): int(r.amount) for r in rows if r.amount}


def all_postings(session: Session) -> list[tuple]:
    """Every posting of the ledger, without ids: what "the same ledger" means in the tests."""
    rows = session.execute(
        text(
            "SELECT t.kind AS tkind, t.idempotency_key, a.kind, a.owner_id, p.amount FROM settlement.postings p "
            "JOIN settlement.transactions t ON t.id = p.transaction_id JOIN settlement.ledger_accounts a ON a.id = p.account_id "
            "ORDER BY t.idempotency_key, a.kind, a.owner_id NULLS FIRST, p.amount"
        )
    )
    return [tuple(r) for r in rows]


def small_world() -> World:
    """Readers with a few clicks each, over owned and unclaimed things, amounts that leave
    leftover cents, and one reader whose wallet is below the budget."""
    readers = {101: (500, 1000), 102: (777, 777), 103: (1000, 333), 104: (200, 5000), 105: (999, 2000)}
    things = {1: 11, 2: 11, 3: 12, 4: None, 5: None, 6: 13}
    clicks = [(101, 1), (101, 2), (101, 4), (102, 1), (102, 3), (102, 4), (102, 5), (102, 6),
              (103, 5), (104, 6), (104, 1), (104, 3), (105, 2), (105, 3), (105, 4)]
    return World(readers=readers, things=things, clicks=clicks, extra_budgets={106: (300, 250), 107: (400, 0)})
