"""Money rules of the settlement service: plain functions, no broker, no database."""
from __future__ import annotations

from services.common.errors import InvalidParameters
from services.common.money import Money


def has_means(budget: int | None, wallet_balance: int | None) -> bool:
    """A reader can pay when a budget is set and the wallet holds at least that budget (no wallet
    holds nothing). SQL twin: ``settlement.has_means``."""
    return budget is not None and (wallet_balance or 0) >= budget


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


# -- the period split ------------------------------------------------------------------------
#
# The SQL twins of these functions do the work in the batch: settlement.platform_fee and
# settlement.split_share (migration 0004), settlement.charge_amount and the view
# settlement.reader_shares, which applies split_share to every click (migration 0005). Property
# tests check that each pair agrees.

BASIS_POINTS = 10000
POLICIES = ("rollover", "charity")


def platform_fee(amount: int, fee_bps: int) -> int:
    """The platform's fee on a reader's period amount: ``fee_bps`` basis points (1000 = 10%),
    rounded down to the cent, so the platform never takes more than its rate."""
    return amount * fee_bps // BASIS_POINTS


def charge_amount(budget: int | None, wallet_balance: int | None) -> int:
    """What a reader pays for a period: their budget, or what the wallet holds if that is less;
    nothing without a budget (or a wallet)."""
    return max(0, min(budget or 0, wallet_balance or 0))


def split_shares(to_split: int, thing_ids: list[int], reader_id: int) -> dict[int, int]:
    """Split ``to_split`` cents equally over the things a reader clicked in a period.

    Everyone gets ``to_split // n``; the ``to_split % n`` leftover cents go one each to the clicks
    whose position (clicks ordered by thing id, counted from 0) plus the reader's id, modulo
    ``n``, is below the leftover. So the shares always sum to ``to_split``, differ by at most one
    cent, depend only on (amount, things, reader), and the extra cents do not always land on the
    oldest things."""
    ordered = sorted(thing_ids)
    n = len(ordered)
    if n == 0:
        return {}
    base, leftover = divmod(to_split, n)
    return {thing: base + (1 if (rank + reader_id) % n < leftover else 0) for rank, thing in enumerate(ordered)}


def settlement_policy(value: str) -> str:
    if value not in POLICIES:
        raise ValueError(f"SETTLEMENT_NO_CLICKS_POLICY must be one of {', '.join(POLICIES)}, not {value!r}")
    return value


def fee_basis_points(value: str) -> int:
    bps = int(value)
    if not 0 <= bps <= BASIS_POINTS:
        raise ValueError(f"SETTLEMENT_FEE_BPS must be 0 to {BASIS_POINTS}, not {value!r}")
    return bps
