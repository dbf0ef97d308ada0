"""A reader's monthly budget: what settlement charges at the end of each period."""
from __future__ import annotations

from services.accounts import rules
from services.accounts.models import User
from services.common.errors import UserNotFound
from services.common.money import CURRENCY

MAX_BUDGET_CENTS = 100000


def set_budget(db, events, user_id, amount) -> dict:
    amount = rules.validate_budget(amount, MAX_BUDGET_CENTS)
    user = db.get(User, user_id, with_for_update=True)
    if user is None:
        raise UserNotFound("no such user")
    if user.budget_cents != amount:
        user.budget_cents = amount
        events.record(db, "budget.changed", {"user_id": user_id, "budget": amount, "currency": CURRENCY})
    db.commit()
    return {"amount": amount, "currency": CURRENCY}


def get_budget(db, user_id) -> dict:
    user = db.get(User, user_id)
    if user is None:
        raise UserNotFound("no such user")
    return {"amount": user.budget_cents, "currency": CURRENCY}
