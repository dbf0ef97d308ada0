"""Escrow of things without a verified owner: released to the owner once verified (the creator
who claims the thing, or its unverified owner who proves it), or refunded to the readers once it
has waited longer than the hold period.

A period's shares for a thing without a verified owner are a ``held`` credit (one row per period
and thing) and sit in that thing's escrow account. Each credit leaves escrow exactly once: its state
moves from ``held`` to ``released`` or ``refunded`` in the transaction that posts the money, under
``ESCROW_LOCK``, which the settlement batch also takes while it posts, so a claim arriving during
a settlement cannot miss the shares that settlement is about to hold.
"""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.common.money import CURRENCY, Money
from services.common.outbox import record_many
from services.settlement import ledger, money_flows, owners

ESCROW_LOCK = "SELECT pg_advisory_xact_lock(hashtext('settlement:escrow'))"

# A held credit (alias ``cr``) settled longer ago than the hold (``:days``): due for a refund.
STALE = "cr.state = 'held' AND cr.settled_at < now() - make_interval(days => :days)"


def lock(session: Session) -> None:
    session.execute(text(ESCROW_LOCK))


def release_owned(session: Session, events, thing_ids: list[int] | None = None) -> list[dict]:
    """Release every held credit of a thing whose owner is verified now (optionally only
    ``thing_ids``) to the owner's revenue: one ledger transaction per thing. The caller holds the
    escrow lock.

    A share the new owner paid into it themself (they flattred the page before it was theirs)
    goes back to their wallet, not to their revenue: nobody earns from their own clicks, and a
    wallet cannot become withdrawable revenue that way. It is recorded in ``own_shares``, as the
    settlement records the shares of things their readers owned already."""
    only = "AND c.thing_id = ANY(CAST(:ids AS bigint[]))" if thing_ids is not None else ""
    rows = session.execute(
        text(
            "SELECT c.thing_id, t.owner_id, sum(c.amount) AS amount, array_agg(c.period ORDER BY c.period) AS periods "
            "FROM settlement.credits c JOIN settlement.things t ON t.thing_id = c.thing_id "
            f"WHERE c.state = 'held' AND t.owner_id IS NOT NULL AND t.verified {only} GROUP BY c.thing_id, t.owner_id ORDER BY c.thing_id"
        ),
        {"ids": thing_ids},
    ).all()
    released = []
    for row in rows:
        amount = int(row.amount)
        own_by_period = _own_shares_in_escrow(session, row.thing_id, row.owner_id, row.periods)
        own = sum(own_by_period.values())
        earned = amount - own
        transaction_id = None
        if amount > 0:
            postings = [(ledger.account(session, "escrow", row.thing_id), Money(-amount))]
            if earned:
                postings.append((ledger.account(session, "revenue", row.owner_id), Money(earned)))
            if own:
                postings.append((ledger.account(session, "wallet", row.owner_id), Money(own)))
            transaction_id = ledger.post(
                session,
                "escrow_released",
                f"escrow-release:{row.thing_id}:{','.join(row.periods)}",
                postings,
                {"thing_id": row.thing_id, "user_id": row.owner_id, "periods": row.periods, "own_share": own},
            ).transaction_id
        if own_by_period:
            session.execute(
                text(
                    "INSERT INTO settlement.own_shares (period, thing_id, user_id, amount, transaction_id) "
                    "SELECT p, :i, :o, a, :t FROM unnest(CAST(:p AS text[]), CAST(:a AS bigint[])) AS r(p, a)"
                ),
                {"i": row.thing_id, "o": row.owner_id, "t": transaction_id, "p": list(own_by_period), "a": list(own_by_period.values())},
            )
        session.execute(
            text(
                "UPDATE settlement.credits c SET state = 'released', owner_id = :o, resolved_at = now(), transaction_id = :t, "
                "to_wallet = coalesce(r.a, 0) FROM (SELECT unnest(CAST(:p AS text[])) AS period) p "
                "LEFT JOIN unnest(CAST(:own_p AS text[]), CAST(:own_a AS bigint[])) AS r(p, a) ON r.p = p.period "
                "WHERE c.thing_id = :i AND c.state = 'held' AND c.period = p.period"
            ),
            {"o": row.owner_id, "t": transaction_id, "i": row.thing_id, "p": row.periods,
             "own_p": list(own_by_period), "own_a": list(own_by_period.values())},
        )
        data = {"thing_id": row.thing_id, "user_id": row.owner_id, "amount": amount, "currency": CURRENCY, "periods": row.periods,
                "to_revenue": earned, "to_wallet": own}
        events.record(session, "escrow.released", data)
        if earned > 0:
            events.record(
                session,
                "revenue.credited",
                {"user_id": row.owner_id, "amount": earned, "currency": CURRENCY, "source": "escrow",
                 "periods": row.periods, "thing_id": row.thing_id},
            )
        if own:
            money_flows.refresh_means(session, events, row.owner_id)
        released.append(data)
    return released


# A reader's share (alias ``s``, from settlement.reader_shares) that went into its thing's
# credit, not straight back to the reader as a share of their own thing.
IN_CREDIT = (
    "NOT EXISTS (SELECT 1 FROM settlement.own_shares o WHERE o.period = s.period AND o.thing_id = s.thing_id AND o.user_id = s.user_id)"
)


def _own_shares_in_escrow(session: Session, thing_id: int, owner_id: int, periods: list[str]) -> dict[str, int]:
    """What ``owner_id`` paid, as a reader, into the thing's escrow, per period of ``periods``."""
    rows = session.execute(
        text(
            "SELECT s.period, s.share FROM settlement.reader_shares s "
            f"WHERE s.period = ANY(CAST(:p AS text[])) AND s.thing_id = :t AND s.user_id = :u AND {IN_CREDIT} ORDER BY s.period"
        ),
        {"p": periods, "t": thing_id, "u": owner_id},
    )
    return {r.period: int(r.share) for r in rows}


def learn_owners_of_stale(session: Session, owners_of, hold_days: int) -> None:
    """Before refunding, ask accounts (``owners_of``: ``accounts.thing_owners``) about the stale
    things: a claim or a verification that accounts accepted but whose ``thing.claimed`` has not
    reached us yet must win over the refund. Runs without the escrow lock (it asks over RPC)."""
    stale = session.execute(
        text(f"SELECT DISTINCT cr.thing_id FROM settlement.credits cr WHERE {STALE} ORDER BY cr.thing_id"),
        {"days": hold_days},
    ).scalars().all()
    session.rollback()
    for start in range(0, len(stale), 1000):
        owners.remember(session, owners_of(list(stale[start : start + 1000])))
        session.commit()


# Each reader's share of a stale credit, by the same rule the batch used: the refund is exactly
# what each reader put in.
_STALE_SHARES = f"""
    SELECT s.user_id, s.thing_id, s.share
    FROM settlement.reader_shares s
    JOIN settlement.credits cr ON cr.period = s.period AND cr.thing_id = s.thing_id
    WHERE s.period = :p AND {STALE} AND s.share > 0 AND {IN_CREDIT}
"""


def refund_stale(session: Session, events, hold_days: int) -> list[dict]:
    """Refund every held credit settled more than ``hold_days`` ago to the readers' wallets, pro
    rata to what each put in: one ledger transaction per credit, set-based per period. The
    caller holds the escrow lock. Things that have an owner by now are released instead."""
    release_owned(session, events)
    periods = session.execute(
        text(f"SELECT DISTINCT cr.period FROM settlement.credits cr WHERE {STALE} ORDER BY cr.period"),
        {"days": hold_days},
    ).scalars().all()
    refunded = []
    for period in periods:
        params = {"p": period, "days": hold_days}
        session.execute(text("CREATE TEMPORARY TABLE IF NOT EXISTS refund_shares (user_id bigint, thing_id bigint, share bigint) ON COMMIT DROP"))
        session.execute(text("TRUNCATE refund_shares"))
        session.execute(text(f"INSERT INTO refund_shares {_STALE_SHARES}"), params)
        credits = session.execute(
            text(f"SELECT cr.thing_id, cr.amount FROM settlement.credits cr WHERE cr.period = :p AND {STALE} ORDER BY cr.thing_id FOR UPDATE"),
            params,
        ).all()
        mismatched = session.execute(
            text(
                "SELECT count(*) FROM settlement.credits cr LEFT JOIN (SELECT thing_id, sum(share) AS amount FROM refund_shares "
                f"GROUP BY thing_id) s USING (thing_id) WHERE cr.period = :p AND {STALE} AND cr.amount <> coalesce(s.amount, 0)"
            ),
            params,
        ).scalar()
        if mismatched:
            raise RuntimeError(f"escrow of {period}: {mismatched} credits differ from their readers' shares; nothing refunded")
        # wallets of readers who are refunded for the first time need an account
        session.execute(
            text(
                "INSERT INTO settlement.ledger_accounts (kind, owner_id) SELECT DISTINCT 'wallet', user_id FROM refund_shares "
                "ON CONFLICT DO NOTHING"
            )
        )
        session.execute(
            text(
                "INSERT INTO settlement.ledger_accounts (kind, owner_id) SELECT 'escrow', thing_id FROM refund_shares "
                "GROUP BY thing_id ON CONFLICT DO NOTHING"
            )
        )
        session.execute(
            text(
                """
                WITH sums AS (SELECT thing_id, sum(share) AS amount FROM refund_shares GROUP BY thing_id),
                txs AS (
                    INSERT INTO settlement.transactions (kind, idempotency_key, details)
                    SELECT 'escrow_refunded', 'escrow-refund:' || CAST(:p AS text) || ':' || thing_id,
                           jsonb_build_object('period', CAST(:p AS text), 'thing_id', thing_id)
                    FROM sums ORDER BY thing_id
                    RETURNING id, (details ->> 'thing_id')::bigint AS thing_id
                )
                INSERT INTO settlement.postings (transaction_id, account_id, amount)
                SELECT txs.id, e.id, -s.amount FROM txs JOIN sums s USING (thing_id)
                    JOIN settlement.ledger_accounts e ON e.kind = 'escrow' AND e.owner_id = s.thing_id
                UNION ALL
                SELECT txs.id, w.id, r.share FROM txs JOIN refund_shares r USING (thing_id)
                    JOIN settlement.ledger_accounts w ON w.kind = 'wallet' AND w.owner_id = r.user_id
                """
            ),
            {"p": period},
        )
        session.execute(
            text(
                "UPDATE settlement.credits cr SET state = 'refunded', resolved_at = now(), "
                "transaction_id = (SELECT id FROM settlement.transactions WHERE idempotency_key = 'escrow-refund:' || cr.period || ':' || cr.thing_id) "
                f"WHERE cr.period = :p AND {STALE}"
            ),
            params,
        )
        record_many(
            session,
            "settlement",
            "escrow.refunded",
            "SELECT jsonb_build_object('thing_id', thing_id, 'period', CAST(:p AS text), 'amount', sum(share), "
            "'readers', count(*), 'currency', CAST(:currency AS text)) AS data FROM refund_shares GROUP BY thing_id",
            {"p": period, "currency": CURRENCY},
        )
        money_flows.refresh_means_many(session, "SELECT DISTINCT user_id FROM refund_shares")
        for credit in credits:
            refunded.append({"period": period, "thing_id": credit.thing_id, "amount": int(credit.amount)})
    return refunded
