"""Money rules of the settlement service: plain functions, no broker, no database."""
from __future__ import annotations

from services.common.errors import InvalidParameters
from services.common.money import Money


def has_means(budget: int | None, wallet_balance: int) -> bool:
    """A reader can pay when a budget is set and the wallet holds at least that budget."""
    return budget is not None and wallet_balance >= budget


# far above any real amount, far below PostgreSQL's bigint limit
MAX_CENTS = 10**15


def amount(value, *, minimum: int, maximum: int = MAX_CENTS, field: str = "amount") -> Money:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidParameters(f"{field} must be an integer number of cents")
    if value < minimum:
        raise InvalidParameters(f"{field} must be at least {minimum} cents")
    if value > maximum:
        raise InvalidParameters(f"{field} must be at most {maximum} cents")
    return Money(value)


def idempotency_key(value) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 100 or not value.isprintable():
        raise InvalidParameters("idempotency_key must be a printable string of 1 to 100 characters")
    return value
