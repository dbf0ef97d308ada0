"""Payment providers behind one small interface, and the sandbox that is the default.

A provider charges readers (deposits) and pays creators (payouts). Both calls carry our own
reference, and a provider answers the same reference with the same result without moving money
twice: that is what makes a retried deposit or a redelivered payout safe. Its answer carries the
amount it moved, which must be ours. It also answers what it knows of one reference
(``charge_record``) and lists every charge it made (``charges``), for the deposit check.

The sandbox behaves like a provider's test mode, with magic amounts (last two digits):
``13`` is declined, ``66`` is a provider error; everything else succeeds. It keeps its records in
the ``sandbox_payments`` table, committed on their own, as a real provider keeps them on its side.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import text

from services.common.db import engine_for

DECLINE_SUFFIX = 13
ERROR_SUFFIX = 66


@dataclass(frozen=True)
class ProviderResult:
    outcome: str  # "approved", "declined" or "error"
    reference: str
    message: str = ""
    amount: int | None = None  # cents the provider moved (or refused to); None with an error

    @property
    def approved(self) -> bool:
        return self.outcome == "approved"


def sandbox_outcome(amount: int) -> str:
    suffix = amount % 100
    if suffix == DECLINE_SUFFIX:
        return "declined"
    if suffix == ERROR_SUFFIX:
        return "error"
    return "approved"


class SandboxProvider:
    name = "sandbox"

    def __init__(self, db_url: str):
        self.engine = engine_for(db_url)

    def _once(self, reference: str, direction: str, amount: int) -> ProviderResult:
        outcome = sandbox_outcome(amount)
        if outcome == "error":
            # a provider error records nothing: the caller may try again later
            return ProviderResult("error", reference, "the payment provider failed; try again later")
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO settlement.sandbox_payments (reference, direction, amount, outcome) "
                    "VALUES (:r, :d, :a, :o) ON CONFLICT (reference) DO NOTHING"
                ),
                {"r": reference, "d": direction, "a": amount, "o": outcome},
            )
            stored = conn.execute(
                text("SELECT outcome, amount FROM settlement.sandbox_payments WHERE reference = :r"), {"r": reference}
            ).one()
        return self._result(reference, stored.outcome, stored.amount)

    @staticmethod
    def _result(reference: str, outcome: str, amount: int) -> ProviderResult:
        message = "declined by the sandbox (amount ends in 13)" if outcome == "declined" else ""
        return ProviderResult(outcome, reference, message, amount)

    def charge(self, reference: str, amount: int) -> ProviderResult:
        return self._once(reference, "charge", amount)

    def pay(self, reference: str, amount: int) -> ProviderResult:
        result = self._once(reference, "payout", amount)
        if os.environ.get("SANDBOX_DIE_AFTER_PAYING") == "1" and result.approved:
            # Fault injection for tests of the sandbox only: the process dies right after the
            # provider paid and before our side recorded it, as a SIGKILL at that instant would.
            os._exit(137)
        return result

    def charge_record(self, reference: str) -> ProviderResult | None:
        """What the sandbox did with the charge ``reference``; None if it never heard of it."""
        with self.engine.connect() as conn:
            stored = conn.execute(
                text("SELECT outcome, amount FROM settlement.sandbox_payments WHERE reference = :r AND direction = 'charge'"),
                {"r": reference},
            ).first()
        return None if stored is None else self._result(reference, stored.outcome, stored.amount)

    def charges(self) -> list[ProviderResult]:
        """Every charge the sandbox approved, as a provider's report lists them."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT reference, outcome, amount FROM settlement.sandbox_payments WHERE direction = 'charge' AND outcome = 'approved'")
            ).all()
        return [self._result(r.reference, r.outcome, r.amount) for r in rows]

    def payments(self, reference: str) -> int:
        """How many times the sandbox moved money for ``reference`` (0 or 1)."""
        with self.engine.connect() as conn:
            return conn.execute(
                text("SELECT count(*) FROM settlement.sandbox_payments WHERE reference = :r AND outcome = 'approved'"), {"r": reference}
            ).scalar_one()


def provider_for(name: str, db_url: str):
    if name == "sandbox":
        return SandboxProvider(db_url)
    raise ValueError(f"unknown payment provider {name!r}")
