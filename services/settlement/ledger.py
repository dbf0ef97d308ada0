"""Posting to the double-entry ledger and checking its invariants.

Plain functions on a SQLAlchemy session, so the service, the settlement batch, the ops command
and the tests share them. The database enforces the rules (see migration 0002); these functions
make the common cases convenient and turn the database's refusals into domain errors.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.common.errors import DomainError
from services.common.money import CURRENCY, Money

SINGLETONS = ("fees", "charity", "clearing", "payouts_in_flight", "adjustments")


class InsufficientFunds(DomainError):
    code, status = "invalid_parameters", 400


class UnbalancedTransaction(Exception):
    """A programming error: postings that do not sum to zero never reach the database."""


def account(session: Session, kind: str, owner_id: int | None = None) -> int:
    """The id of the ledger account (created on first use)."""
    if (kind in SINGLETONS) != (owner_id is None):
        raise ValueError(f"{kind} accounts {'have no' if kind in SINGLETONS else 'need an'} owner")
    found = session.execute(
        text("SELECT id FROM settlement.ledger_accounts WHERE kind = :k AND owner_id IS NOT DISTINCT FROM :o"),
        {"k": kind, "o": owner_id},
    ).scalar()
    if found is not None:
        return found
    session.execute(
        text("INSERT INTO settlement.ledger_accounts (kind, owner_id) VALUES (:k, :o) ON CONFLICT DO NOTHING"),
        {"k": kind, "o": owner_id},
    )
    return session.execute(
        text("SELECT id FROM settlement.ledger_accounts WHERE kind = :k AND owner_id IS NOT DISTINCT FROM :o"),
        {"k": kind, "o": owner_id},
    ).scalar_one()


def balance(session: Session, kind: str, owner_id: int | None = None) -> Money:
    value = session.execute(
        text("SELECT balance FROM settlement.ledger_accounts WHERE kind = :k AND owner_id IS NOT DISTINCT FROM :o"),
        {"k": kind, "o": owner_id},
    ).scalar()
    return Money(value or 0)


@dataclass(frozen=True)
class Posted:
    transaction_id: int
    created: bool  # False when the idempotency key had already been posted


def post(session: Session, kind: str, key: str, postings: list[tuple[int, Money]], details: dict | None = None) -> Posted:
    """Post one balanced transaction, once per ``key``.

    The accounts are locked in id order first, so concurrent transactions on the same accounts
    queue up instead of deadlocking. A posting that would make a wallet or revenue negative
    raises ``InsufficientFunds`` and leaves the session as it was (a savepoint is rolled back).
    """
    if sum(m.cents for _, m in postings) != 0 or any(m.cents == 0 for _, m in postings):
        raise UnbalancedTransaction(f"{kind} {key}: postings must be non-zero and sum to zero")
    account_ids = sorted({a for a, _ in postings})
    with session.begin_nested() as savepoint:
        session.execute(
            text("SELECT id FROM settlement.ledger_accounts WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"), {"ids": account_ids}
        )
        transaction_id = session.execute(
            text(
                "INSERT INTO settlement.transactions (kind, idempotency_key, details) VALUES (:kind, :key, CAST(:details AS jsonb)) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
            ),
            {"kind": kind, "key": key, "details": json.dumps(details or {})},
        ).scalar()
        if transaction_id is None:
            existing = session.execute(
                text("SELECT id FROM settlement.transactions WHERE idempotency_key = :key"), {"key": key}
            ).scalar_one()
            return Posted(existing, False)
        values = ", ".join(f"(:t, :a{i}, :m{i})" for i in range(len(postings)))
        params = {"t": transaction_id}
        for i, (account_id, money) in enumerate(postings):
            params[f"a{i}"], params[f"m{i}"] = account_id, money.cents
        try:
            session.execute(text(f"INSERT INTO settlement.postings (transaction_id, account_id, amount) VALUES {values}"), params)
        except IntegrityError as exc:
            savepoint.rollback()
            if "no_negative_wallet_or_revenue" in str(exc.orig):
                raise InsufficientFunds("not enough money in the account") from None
            raise
    return Posted(transaction_id, True)


def transfer(session: Session, kind: str, key: str, source: int, destination: int, amount: Money, details: dict | None = None) -> Posted:
    return post(session, kind, key, [(source, -amount), (destination, amount)], details)


# -- invariants ------------------------------------------------------------------------------


def check(session: Session) -> dict:
    """The ledger's invariants, from the tables themselves. ``ok`` is False with ``failures`` named."""
    failures = []
    totals = {
        row.kind: int(row.total)
        for row in session.execute(text("SELECT kind, sum(balance) AS total FROM settlement.ledger_accounts GROUP BY kind"))
    }
    for kind in ("wallet", "revenue", "escrow", "fees", "charity", "clearing", "payouts_in_flight", "adjustments"):
        totals.setdefault(kind, 0)
    overall = sum(totals.values())
    if overall != 0:
        failures.append(f"the balances sum to {overall}, not 0")
    negative = session.execute(
        text("SELECT count(*) FROM settlement.ledger_accounts WHERE kind IN ('wallet', 'revenue') AND balance < 0")
    ).scalar()
    if negative:
        failures.append(f"{negative} wallet or revenue accounts are negative")
    drifted = session.execute(
        text(
            "SELECT count(*) FROM settlement.ledger_accounts a LEFT JOIN "
            "(SELECT account_id, sum(amount) AS s FROM settlement.postings GROUP BY account_id) p ON p.account_id = a.id "
            "WHERE a.balance <> coalesce(p.s, 0)"
        )
    ).scalar()
    if drifted:
        failures.append(f"{drifted} account balances differ from the sum of their postings")
    unbalanced = session.execute(
        text("SELECT count(*) FROM (SELECT transaction_id FROM settlement.postings GROUP BY transaction_id HAVING sum(amount) <> 0) u")
    ).scalar()
    if unbalanced:
        failures.append(f"{unbalanced} transactions do not balance")
    deposits = int(session.execute(text("SELECT coalesce(sum(amount), 0) FROM settlement.deposits WHERE state = 'completed'")).scalar())
    paid_out = int(session.execute(text("SELECT coalesce(sum(amount), 0) FROM settlement.payouts WHERE state = 'completed'")).scalar())
    held = sum(totals[k] for k in ("wallet", "revenue", "escrow", "fees", "charity", "payouts_in_flight"))
    # money that came in = money held + money paid out + money the operators added (adjustments
    # post their opposite side to the adjustments account, so its balance is minus what they added)
    accounted = held + paid_out + totals["adjustments"]
    if deposits != accounted:
        failures.append(
            f"deposits ({deposits}) are not accounted for: held {held} + paid out {paid_out} + adjustments {totals['adjustments']} = {accounted}"
        )
    return {
        "ok": not failures,
        "failures": failures,
        "totals": {**totals, "deposits": deposits, "paid_out": paid_out},
        "currency": CURRENCY,
    }
