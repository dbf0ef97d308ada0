"""Closed accounts (``user.deleted``): once the first period sealed after the closing is settled
(the closed account's last flattrs are charged and its things' last shares credited), everything
its wallet and revenue hold leaves in one final payout, paid by the payouts workers like any
other. No minimum applies; a final payout the provider refuses goes back to the revenue account,
where an operator finds it (``payout.failed``)."""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.common.money import CURRENCY, Money
from services.settlement import ledger, money_flows
from services.settlement.models import Payout

# starts with a tab: clients' idempotency keys are printable, so none can take this one first
FINAL_PAYOUT_KEY = "\taccount-closed"


def remember(session: Session, user_id: int, closed_at: str) -> None:
    session.execute(
        text("INSERT INTO settlement.closed_accounts (user_id, closed_at) VALUES (:u, :t) ON CONFLICT DO NOTHING"),
        {"u": user_id, "t": closed_at},
    )


def due(session: Session, limit: int = 100) -> list[int]:
    """Closed accounts not paid out whose last period is settled, and no settlement under way."""
    return list(
        session.execute(
            text(
                "SELECT c.user_id FROM settlement.closed_accounts c WHERE c.paid_out_at IS NULL "
                "AND EXISTS (SELECT 1 FROM settlement.settlements s WHERE s.sealed_at > c.closed_at AND s.state = 'settled') "
                "AND NOT EXISTS (SELECT 1 FROM settlement.settlements s WHERE s.state <> 'settled') "
                "ORDER BY c.user_id LIMIT :n FOR UPDATE OF c SKIP LOCKED"
            ),
            {"n": limit},
        ).scalars()
    )


def pay_out(session: Session, events, user_id: int) -> int | None:
    """The final payout of a closed account (the caller holds its ``closed_accounts`` row); its id,
    or None when there was nothing to pay."""
    wallet, revenue = ledger.balance(session, "wallet", user_id).cents, ledger.balance(session, "revenue", user_id).cents
    payout_id = None
    if wallet + revenue > 0:
        payout = Payout(user_id=user_id, amount=wallet + revenue, idempotency_key=FINAL_PAYOUT_KEY, state="requested")
        session.add(payout)
        session.flush()
        postings = [(ledger.account(session, "payouts_in_flight"), Money(wallet + revenue))]
        if wallet:
            postings.append((ledger.account(session, "wallet", user_id), Money(-wallet)))
        if revenue:
            postings.append((ledger.account(session, "revenue", user_id), Money(-revenue)))
        ledger.post(session, "payout_requested", f"payout:{payout.id}:request", postings,
                    {"payout_id": payout.id, "account_closed": True, "wallet": wallet, "revenue": revenue})
        events.record(session, "payout.requested", {"payout_id": payout.id, "user_id": user_id, "amount": wallet + revenue, "currency": CURRENCY})
        money_flows.refresh_means(session, events, user_id)
        payout_id = payout.id
    session.execute(
        text("UPDATE settlement.closed_accounts SET paid_out_at = now(), payout_id = :p WHERE user_id = :u"), {"p": payout_id, "u": user_id}
    )
    return payout_id
