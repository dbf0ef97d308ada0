"""Statements: where a reader's money went in a period, and what a creator's things earned.

Read from the settlement's own records (``charges``, ``credits`` and each reader's share of each
click from ``settlement.reader_shares``, the rule the batch used), so a statement adds up to the
ledger to the cent. A reader's share of a thing they own (at the settlement, or by a claim later)
went back to their wallet: its line says ``wallet``, and ``own_shares`` sums those lines.
"""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.common.money import CURRENCY

# where a reader's share of a thing ended up, by the state of that thing's credit (a share of a
# thing the reader owns goes back to their wallet whatever the state)
DESTINATIONS = {"paid": "revenue", "released": "revenue", "held": "escrow", "refunded": "refunded"}


def revenue_by_period(session: Session, user_id: int) -> list[dict]:
    rows = session.execute(
        text(
            "SELECT period, sum(amount - to_wallet) AS amount FROM settlement.credits WHERE owner_id = :u AND state IN ('paid', 'released') "
            "GROUP BY period ORDER BY period DESC"
        ),
        {"u": user_id},
    )
    return [{"period": r.period, "amount": int(r.amount)} for r in rows]


def statement(session: Session, user_id: int, period: str) -> dict | None:
    state = session.execute(text("SELECT state FROM settlement.settlements WHERE period = :p"), {"p": period}).scalar()
    if state is None:
        return None
    out = {"period": period, "state": state, "currency": CURRENCY, "charged": None, "spent": [], "refunded": 0, "own_shares": 0,
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
                    "SELECT s.thing_id, s.share, cr.state, o.user_id IS NOT NULL AS own FROM settlement.reader_shares s "
                    "LEFT JOIN settlement.credits cr ON cr.period = s.period AND cr.thing_id = s.thing_id "
                    "LEFT JOIN settlement.own_shares o ON o.period = s.period AND o.thing_id = s.thing_id AND o.user_id = s.user_id "
                    "WHERE s.period = :p AND s.user_id = :u ORDER BY s.thing_id"
                ),
                params,
            ).all()
            out["spent"] = [
                {"thing_id": r.thing_id, "amount": int(r.share), "destination": "wallet" if r.own else DESTINATIONS.get(r.state, "escrow")}
                for r in spent
            ]
            out["refunded"] = sum(line["amount"] for line in out["spent"] if line["destination"] == "refunded")
            out["own_shares"] = sum(line["amount"] for line in out["spent"] if line["destination"] == "wallet")
    # what the user's things earned: each credit less what went back to the user's own wallet
    # (their own click, when the escrow of a thing they claimed was released: the own share the
    # release recorded, in the release's transaction)
    earned = session.execute(
        text(
            "SELECT cr.thing_id, cr.amount - cr.to_wallet AS amount, cr.clicks - CAST(o.user_id IS NOT NULL AS integer) AS clicks, cr.state "
            "FROM settlement.credits cr LEFT JOIN settlement.own_shares o "
            "ON cr.state = 'released' AND o.period = cr.period AND o.thing_id = cr.thing_id AND o.user_id = cr.owner_id "
            "AND o.transaction_id IS NOT DISTINCT FROM cr.transaction_id "
            "WHERE cr.period = :p AND cr.owner_id = :u AND cr.state IN ('paid', 'released') "
            "AND cr.clicks > CAST(o.user_id IS NOT NULL AS integer) ORDER BY amount DESC, cr.thing_id"
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
