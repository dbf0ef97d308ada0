"""Adjustments: operators' audited corrections, the only way money appears outside a deposit.

An adjustment moves an amount (negative to take back) between the adjustments account and a
user's wallet or revenue, with a reason and the actor the caller names from its credential (the
gateway: its admin credential). Its idempotency key names it among that user's adjustments: the
same key again with the same account, amount and reason is the same adjustment (nothing posted
again); with anything else it is refused as a conflict.
"""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.common.errors import Conflict, InvalidParameters
from services.common.money import Money
from services.settlement import ledger, money_flows

USER_ACCOUNT_KINDS = ("wallet", "revenue")


def _recorded(session: Session, owner_id: int, key: str):
    return session.execute(
        text(
            "SELECT a.transaction_id, a.amount, a.reason, la.kind FROM settlement.adjustments a "
            "JOIN settlement.ledger_accounts la ON la.id = a.account_id WHERE a.owner_id = :o AND a.idempotency_key = :k"
        ),
        {"o": owner_id, "k": key},
    ).first()


def _the_same(recorded, kind: str, amount: Money, reason: str) -> int:
    if (recorded.kind, recorded.amount, recorded.reason) != (kind, amount.cents, reason):
        raise Conflict("this idempotency_key was used for another adjustment of this user")
    return recorded.transaction_id


def adjust(session: Session, events, kind: str, owner_id: int, amount: Money, reason: str, actor: str, key: str) -> tuple[int, bool]:
    """Post the adjustment once; its transaction id, and whether this call posted it. The caller
    commits."""
    if kind not in USER_ACCOUNT_KINDS:
        raise InvalidParameters(f"kind must be one of {', '.join(USER_ACCOUNT_KINDS)}")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidParameters("an adjustment needs a reason")
    if not isinstance(actor, str) or not actor.strip() or len(actor) > 100:
        raise InvalidParameters("an adjustment needs an actor of 1 to 100 characters")
    reason = reason.strip()
    recorded = _recorded(session, owner_id, key)
    if recorded is not None:
        return _the_same(recorded, kind, amount, reason), False
    target = ledger.account(session, kind, owner_id)
    source = ledger.account(session, "adjustments")
    try:
        # a key of its own form: the global keys of earlier adjustments were "adjustment:<key>"
        posted = ledger.transfer(
            session, "adjustment", f"adjustment-of:{owner_id}:{key}", source, target, amount, {"reason": reason, "actor": actor}
        )
    except ledger.InsufficientFunds:
        raise InvalidParameters("the adjustment would make the account negative") from None
    if not posted.created:
        # a request with the same key posted it a moment ago, with its record, in one commit
        recorded = _recorded(session, owner_id, key)
        if recorded is None:
            raise Conflict("this idempotency_key was used for another adjustment of this user")
        return _the_same(recorded, kind, amount, reason), False
    session.execute(
        text(
            "INSERT INTO settlement.adjustments (transaction_id, account_id, owner_id, idempotency_key, amount, reason, actor) "
            "VALUES (:t, :a, :o, :k, :m, :r, :actor)"
        ),
        {"t": posted.transaction_id, "a": target, "o": owner_id, "k": key, "m": amount.cents, "r": reason, "actor": actor},
    )
    if kind == "wallet":
        money_flows.refresh_means(session, events, owner_id)
    return posted.transaction_id, True
