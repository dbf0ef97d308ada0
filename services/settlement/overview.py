"""What the web pages and the notices show of a reader's or a creator's money, from the settlement
rules (``rules``) and records: nothing here decides money, it only reads and projects.

- ``projected_period``: what the open period would charge a reader, and each clicked thing's
  share, if it were settled now: the batch's rules (``charge_amount``, ``platform_fee``,
  ``split_shares``) applied to today's budget and wallet.
- ``statement_periods``: per settled period, what a user was charged and earned (the spending
  and revenue charts).
- ``escrow_of_things``: what waits in escrow for some things.
- ``period_notices``: per user, what a settled period meant for them (the notices accounts mails).
- ``export``: every money record of a user (the data export).
"""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.common.money import CURRENCY
from services.common.times import unix
from services.settlement import ledger, money_flows, rules


def projected_period(session: Session, user_id: int, thing_ids: list[int], fee_bps: int, policy: str) -> dict:
    balance = ledger.balance(session, "wallet", user_id).cents
    budget = money_flows.budget_of(session, user_id)
    charge = rules.charge_amount(budget, balance)
    out = {"budget": budget, "balance": balance, "currency": CURRENCY, "fee_bps": fee_bps, "policy": policy,
           "charge": 0, "fee": 0, "to_things": 0, "to_charity": 0, "shares": []}
    if thing_ids:
        fee = rules.platform_fee(charge, fee_bps)
        shares = rules.split_shares(charge - fee, thing_ids, user_id)
        out.update(charge=charge, fee=fee, to_things=charge - fee,
                   shares=[{"thing_id": thing, "amount": amount} for thing, amount in sorted(shares.items())])
    elif policy == "charity":
        out.update(charge=charge, to_charity=charge)
    return out


def statement_periods(session: Session, user_id: int) -> list[dict]:
    """Settled periods in which the user was charged or earned, oldest first."""
    rows = session.execute(
        text(
            """
            SELECT s.period, s.sealed_at, s.settled_at, ch.amount AS charged, ch.fee, ch.kind, coalesce(e.earned, 0) AS earned
            FROM settlement.settlements s
            LEFT JOIN settlement.charges ch ON ch.period = s.period AND ch.user_id = :u
            LEFT JOIN (SELECT period, sum(amount) AS earned FROM settlement.credits
                       WHERE owner_id = :u AND state IN ('paid', 'released') GROUP BY period) e ON e.period = s.period
            WHERE s.state = 'settled' AND (ch.user_id IS NOT NULL OR e.period IS NOT NULL)
            ORDER BY s.sealed_at, s.period
            """
        ),
        {"u": user_id},
    )
    return [
        {
            "period": r.period,
            "sealed_at": unix(r.sealed_at),
            "settled_at": unix(r.settled_at),
            "charged": int(r.charged or 0),
            "fee": int(r.fee or 0),
            "to_charity": int(r.charged or 0) if r.kind == "charity" else 0,
            "earned": int(r.earned),
        }
        for r in rows
    ]


def escrow_of_things(session: Session, thing_ids: list[int]) -> dict:
    """``{thing_id: cents held in its escrow}`` for the things of ``thing_ids`` that hold some."""
    rows = session.execute(
        text(
            "SELECT thing_id, sum(amount) AS held, min(period) AS since FROM settlement.credits "
            "WHERE state = 'held' AND thing_id = ANY(CAST(:ids AS bigint[])) GROUP BY thing_id"
        ),
        {"ids": thing_ids},
    )
    return {str(r.thing_id): {"amount": int(r.held), "since": r.since} for r in rows if r.held}


def period_notices(session: Session, period: str, after: int | None, limit: int) -> dict:
    """Per user, what the settled ``period`` meant for them: ``charged`` and ``fee`` as a reader,
    ``earned`` as a creator, and ``escrow_waiting``: cents this period put in the escrow of things
    they own whose ownership is not verified (``escrow_total``: all such escrow). Users after
    ``after`` in id order, ``limit`` at a time; ``last`` is the page's last user."""
    rows = session.execute(
        text(
            """
            WITH charged AS (
                SELECT user_id, amount, fee FROM settlement.charges WHERE period = :p
            ), earned AS (
                SELECT owner_id AS user_id, sum(amount) AS amount FROM settlement.credits
                WHERE period = :p AND state IN ('paid', 'released') AND owner_id IS NOT NULL GROUP BY owner_id
            ), waiting AS (
                SELECT t.owner_id AS user_id, sum(c.amount) FILTER (WHERE c.period = :p) AS this_period, sum(c.amount) AS total
                FROM settlement.credits c JOIN settlement.things t ON t.thing_id = c.thing_id
                WHERE c.state = 'held' AND t.owner_id IS NOT NULL GROUP BY t.owner_id
            ), users AS (
                SELECT user_id FROM charged UNION SELECT user_id FROM earned
                UNION SELECT user_id FROM waiting WHERE this_period > 0
            )
            SELECT u.user_id, coalesce(c.amount, 0) AS charged, coalesce(c.fee, 0) AS fee, c.user_id IS NOT NULL AS was_charged,
                   coalesce(e.amount, 0) AS earned, coalesce(w.this_period, 0) AS escrow_waiting, coalesce(w.total, 0) AS escrow_total
            FROM users u LEFT JOIN charged c USING (user_id) LEFT JOIN earned e USING (user_id) LEFT JOIN waiting w USING (user_id)
            WHERE u.user_id > :a ORDER BY u.user_id LIMIT :n
            """
        ),
        {"p": period, "a": -1 if after is None else after, "n": limit},
    ).all()
    users = [
        {"user_id": r.user_id, "charged": int(r.charged), "fee": int(r.fee), "was_charged": r.was_charged, "earned": int(r.earned),
         "escrow_waiting": int(r.escrow_waiting), "escrow_total": int(r.escrow_total)}
        for r in rows
    ]
    return {"period": period, "currency": CURRENCY, "users": users, "last": users[-1]["user_id"] if users else None,
            "done": len(users) < limit}


def export(session: Session, user_id: int) -> dict:
    """Every money record of a user: balances, deposits, payouts, charges, their things' credits
    and every posting on their wallet and revenue accounts."""
    params = {"u": user_id}

    def rows(query: str):
        return [dict(r._mapping) for r in session.execute(text(query), params)]

    def with_times(items: list[dict], *names: str) -> list[dict]:
        for item in items:
            for name in names:
                item[name] = unix(item[name])
        return items

    return {
        "currency": CURRENCY,
        "wallet": ledger.balance(session, "wallet", user_id).cents,
        "revenue": ledger.balance(session, "revenue", user_id).cents,
        "budget": money_flows.budget_of(session, user_id),
        "deposits": with_times(rows("SELECT id, amount, idempotency_key, state, created_at FROM settlement.deposits WHERE user_id = :u ORDER BY id"), "created_at"),
        "payouts": with_times(
            rows("SELECT id, amount, idempotency_key, state, reason, created_at, updated_at FROM settlement.payouts WHERE user_id = :u ORDER BY id"),
            "created_at", "updated_at",
        ),
        "charges": rows("SELECT period, kind, amount, fee, clicks FROM settlement.charges WHERE user_id = :u ORDER BY period"),
        "credits": with_times(
            rows("SELECT period, thing_id, amount, clicks, state, settled_at FROM settlement.credits WHERE owner_id = :u ORDER BY period, thing_id"),
            "settled_at",
        ),
        "postings": with_times(
            rows(
                "SELECT t.id AS transaction_id, t.kind AS transaction, a.kind AS account, p.amount, t.created_at "
                "FROM settlement.postings p JOIN settlement.ledger_accounts a ON a.id = p.account_id "
                "JOIN settlement.transactions t ON t.id = p.transaction_id "
                "WHERE a.kind IN ('wallet', 'revenue') AND a.owner_id = :u ORDER BY p.id"
            ),
            "created_at",
        ),
    }
