"""Statements: where a reader's money went in a period, and what a creator's things earned.

Read from the settlement's own records (``charges``, ``credits`` and each reader's share of each
click from ``settlement.reader_shares``, the rule the batch used), so a statement adds up to the
ledger to the cent.
"""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.common.money import CURRENCY

# where a reader's share of a thing ended up, by the state of that thing's credit
DESTINATIONS = {"paid": "revenue", "released": "revenue", "held": "escrow", "refunded": "refunded"}


def revenue_by_period(session: Session, user_id: int) -> list[dict]:
    rows = session.execute(
        text(
            "SELECT period, sum(amount) AS amount FROM settlement.credits WHERE owner_id = :u AND state IN ('paid', 'released') "
            "GROUP BY period ORDER BY period DESC"
        ),
        {"u": user_id},
    )
    return [{"period": r.period, "amount": int(r.amount)} for r in rows]


def statement(session: Session, user_id: int, period: str) -> dict | None:
    state = session.execute(text("SELECT state FROM settlement.settlements WHERE period = :p"), {"p": period}).scalar()
    if state is None:
        return None
    out = {"period": period, "state": state, "currency": CURRENCY, "charged": None, "spent": [], "refunded": 0,
           "earned": {"amount": 0, "things": []}}
    if state != "settled":
        return out
    params = {"p": period, "u": user_id}
    charge = session.execute(
        text("SELECT kind, amount, fee, clicks FROM settlement.charges WHERE period = :p AND user_id = :u"), params
    ).first()
    if charge is not None:
        out["charged"] = {
            "amount": charge.amount,
            "fee": charge.fee,
            "to_things": charge.amount - charge.fee if charge.kind == "split" else 0,
            "to_charity": charge.amount if charge.kind == "charity" else 0,
            "clicks": charge.clicks,
        }
        if charge.kind == "split":
            spent = session.execute(
                text(
                    "SELECT s.thing_id, s.share, cr.state FROM settlement.reader_shares s "
                    "LEFT JOIN settlement.credits cr ON cr.period = s.period AND cr.thing_id = s.thing_id "
                    "WHERE s.period = :p AND s.user_id = :u ORDER BY s.thing_id"
                ),
                params,
            ).all()
            out["spent"] = [
                {"thing_id": r.thing_id, "amount": int(r.share), "destination": DESTINATIONS.get(r.state, "escrow")} for r in spent
            ]
            out["refunded"] = sum(line["amount"] for line in out["spent"] if line["destination"] == "refunded")
    earned = session.execute(
        text(
            "SELECT thing_id, amount, clicks, state FROM settlement.credits WHERE period = :p AND owner_id = :u "
            "AND state IN ('paid', 'released') ORDER BY amount DESC, thing_id"
        ),
        params,
    ).all()
    out["earned"] = {
        "amount": sum(int(r.amount) for r in earned),
        "things": [
            {"thing_id": r.thing_id, "amount": int(r.amount), "clicks": r.clicks, "source": "settlement" if r.state == "paid" else "escrow"}
            for r in earned
        ],
    }
    return out
