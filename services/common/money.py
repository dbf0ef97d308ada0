"""Money as an integer number of minor units (cents) in one currency. Never a float."""
from __future__ import annotations

from dataclasses import dataclass

# the one currency of the ledger (ARCHITECTURE.md); every amount the API shows carries it
CURRENCY = "EUR"


@dataclass(frozen=True, order=True)
class Money:
    cents: int
    currency: str = CURRENCY

    def __post_init__(self):
        # bool is an int subclass; True cents is a bug, not money.
        if not isinstance(self.cents, int) or isinstance(self.cents, bool):
            raise TypeError(f"money is an integer number of cents, got {self.cents!r}")
        if not (isinstance(self.currency, str) and len(self.currency) == 3 and self.currency.isupper()):
            raise ValueError(f"currency must be an ISO 4217 code, got {self.currency!r}")

    def _same(self, other: "Money") -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise ValueError(f"currency mismatch: {self.currency} and {other.currency}")

    def __add__(self, other: "Money") -> "Money":
        self._same(other)
        return Money(self.cents + other.cents, self.currency)

    def __sub__(self, other: "Money") -> "Money":
        self._same(other)
        return Money(self.cents - other.cents, self.currency)

    def __neg__(self) -> "Money":
        return Money(-self.cents, self.currency)

    def __bool__(self) -> bool:
        return self.cents != 0

    def __str__(self) -> str:
        sign = "-" if self.cents < 0 else ""
        whole, cents = divmod(abs(self.cents), 100)
        return f"{sign}{whole}.{cents:02d} {self.currency}"


def cents_from_text(value: str) -> int:
    """Cents from an amount a person typed in whole units: ``5``, ``5.5``, ``5.50``, ``5,50``,
    ``€ 1 234.56``; ValueError for anything else (more than two decimals, a sign, letters)."""
    cleaned = str(value).strip().replace("€", "").replace("EUR", "").replace(" ", "").replace("\u00a0", "")
    cleaned = cleaned.replace(",", ".")
    whole, dot, fraction = cleaned.partition(".")
    if not whole.isdigit() and not (whole == "" and fraction):
        raise ValueError("an amount like 5 or 5.50")
    if dot and (not fraction.isdigit() or len(fraction) > 2):
        raise ValueError("an amount like 5 or 5.50, with at most two decimals")
    if len(whole) > 15:
        raise ValueError("too large an amount")
    return int(whole or "0") * 100 + int((fraction or "0").ljust(2, "0"))
