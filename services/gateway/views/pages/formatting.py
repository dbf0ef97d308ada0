"""How the pages show figures: money as the ledger's ``Money`` prints it (``12.34 EUR``, exact
to the cent), times in UTC."""
from __future__ import annotations

from datetime import datetime, timezone

from markupsafe import Markup, escape

from services.common.money import CURRENCY, Money


def money(cents, currency: str = CURRENCY) -> str:
    return "" if cents is None else str(Money(int(cents), currency))


def money_data(cents, currency: str = CURRENCY) -> Markup:
    """The amount for people, with the cents for machines: ``<data value="1234">12.34 EUR</data>``."""
    if cents is None:
        return Markup("")
    return Markup(f'<data class="money" value="{int(cents)}">{escape(money(cents, currency))}</data>')


def day(seconds) -> str:
    return "" if seconds is None else datetime.fromtimestamp(int(seconds), timezone.utc).strftime("%Y-%m-%d")


def moment(seconds) -> str:
    return "" if seconds is None else datetime.fromtimestamp(int(seconds), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def iso(seconds) -> str:
    return "" if seconds is None else datetime.fromtimestamp(int(seconds), timezone.utc).isoformat()


# what each scope lets a token do, in words (the consent page and the token form)
SCOPE_TEXT = {
    "flattr": "flattr things and manage your subscriptions",
    "thing": "register, change and delete your things, and claim them",
    "email": "see your email address",
    "extendedread": "see your private profile fields and hidden things",
    "wallet": "set your budget, see your wallet and fund it (personal tokens only)",
    "payout": "see your revenue and request payouts (personal tokens only)",
}

FILTERS = {"money": money, "money_data": money_data, "day": day, "moment": moment, "iso": iso}
