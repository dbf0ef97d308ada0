"""The period settlement batch: a sealed period's budgets become creators' revenue and escrow.

Steps, each recorded in ``settlement.settlements`` so a re-run (after a crash, or the redelivered
``period.sealed``) picks up where the last run stopped:

``pending``
    the settlement exists (made when ``period.sealed`` arrived), with the fee rate and the policy
    for readers without clicks fixed then, so a re-run settles by the same rules.
``importing``
    the period's clicks move from the clicks service in chunks (``export_clicks``, keyset-paged,
    a few MB each), each chunk ``COPY``-ed into the period's own partition of ``period_clicks`` in
    the same transaction that advances the cursor: a chunk is in once or not at all.
``imported``
    every click is here: the count is checked against the one ``period.sealed`` announced.
``posted``
    one database transaction computes what each reader pays (``charges``), splits it over their
    clicks and sums the shares per thing (``credits``; a reader's share of a thing they own goes
    back to them, ``own_shares``), posts a single balanced ledger transaction (wallets to fees,
    charity, verified owners' revenue and things' escrow, and own shares back to the readers'
    wallets) under the idempotency key
    ``settlement:<period>``, writes the events, and marks the settlement ``settled``. Killed
    anywhere inside, nothing of it remains; the re-run posts the same ledger.

All of it is set-based SQL; Python never holds more than one chunk of clicks. One batch runs at
a time (a session advisory lock), and ``settlements.period`` is the primary key, so a period is
settled once however many processes and events ask for it.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from services.common.db import copy
from services.common.money import CURRENCY
from services.common.outbox import TableRecorder, record_many
from services.common.periods import is_period_id
from services.common.times import unix
from services.settlement import escrow, ledger, money_flows, owners
from services.settlement.models import outbox

log = logging.getLogger(__name__)

BATCH_LOCK = "hashtext('settlement:batch')"
WORK_MEM = "256MB"


class SettlementFailed(Exception):
    """The batch stopped for a reason an operator should read; the settlement is ``failed``."""


@dataclass
class Sources:
    """What the batch asks other services for (by RPC in the services, directly in tests)."""

    # clicks.export_clicks: (period, after: the last reader of the previous page or None, limit) ->
    # {"rows": "user\tthing\trank\tclicks\n..." (COPY text), "count", "last": the page's last reader, "done"}
    export_clicks: Callable[[str, int | None, int], dict]
    # accounts.thing_owners: [thing_id, ...] -> {"<thing_id>": {"owner_id": int or None, "verified": bool}},
    # for things the settlement has not heard of
    thing_owners: Callable[[list[int]], dict]


def period_table(table: str, period: str) -> str:
    """The name of ``table``'s partition for ``period`` (``period_clicks``, ``charges``, ``credits``)."""
    if not is_period_id(period):
        raise ValueError(f"not a period id: {period!r}")
    return f"{table}_" + re.sub(r"[^0-9]", "_", period)


def partition_name(period: str) -> str:
    """The partition of ``period_clicks`` that holds ``period``'s clicks."""
    return period_table("period_clicks", period)


def _new_period_table(session: Session, table: str, period: str) -> str:
    """A plain table like ``table`` (columns, defaults, CHECKs) for ``period``'s rows, to be
    filled, then attached as its partition by ``_attach``; its name, schema-qualified."""
    name = f'settlement."{period_table(table, period)}"'
    # the partition's own bound as a CHECK, so that attaching it reads none of its rows
    session.execute(
        text(
            f"CREATE TABLE {name} (LIKE settlement.{table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS, "
            f"CONSTRAINT in_period CHECK (period = '{period}'))"
        )
    )
    return name


def _attach(session: Session, table: str, name: str, period: str) -> None:
    """Attach a filled period table: PostgreSQL builds its indexes by sorting its rows once
    (inserted into the indexed table, every row cost an entry in each index, one at a time)."""
    session.execute(text(f"ALTER TABLE settlement.{table} ATTACH PARTITION {name} FOR VALUES IN ('{period}')"))
    # fresh statistics, so the statements after it are planned for its size, not for a guess;
    # and, once, the partitioned table's own (see migration 0012)
    known = session.execute(
        text("SELECT EXISTS (SELECT FROM pg_stats WHERE schemaname = 'settlement' AND tablename = :t AND inherited)"), {"t": table}
    ).scalar()
    session.execute(text(f"ANALYZE {name if known else 'settlement.' + table}"))


def begin(session: Session, period: str, sealed_at: datetime | str, expected_clicks: int, policy: str, fee_bps: int) -> bool:
    """Record that ``period`` is to be settled, with the rules in force now; False if it already was."""
    partition_name(period)
    made = session.execute(
        text(
            "INSERT INTO settlement.settlements (period, policy, fee_bps, sealed_at, expected_clicks) "
            "VALUES (:p, :policy, :fee, :sealed, :clicks) ON CONFLICT (period) DO NOTHING RETURNING period"
        ),
        {"p": period, "policy": policy, "fee": fee_bps, "sealed": sealed_at, "clicks": expected_clicks},
    ).scalar()
    return made is not None


def status(session: Session, period: str) -> dict | None:
    row = session.execute(text("SELECT * FROM settlement.settlements WHERE period = :p"), {"p": period}).mappings().first()
    if row is None:
        return None
    totals = dict(row["totals"]) if row["state"] == "settled" else {"clicks": row["expected_clicks"], "clicks_moved": row["imported_clicks"]}
    out = {
        "period": row["period"],
        "state": row["state"],
        "step": row["step"],
        "totals": totals,
        "policy": row["policy"],
        "fee_bps": row["fee_bps"],
        "attempts": row["attempts"],
        "started_at": unix(row["started_at"]),
        "settled_at": unix(row["settled_at"]),
    }
    if row["state"] == "failed":
        out["reason"] = row["reason"]
    return out


class Batch:
    def __init__(
        self,
        engine: Engine,
        sources: Sources,
        *,
        chunk_rows: int = 250000,
        progress: Callable[[str, int, int], None] | None = None,
        die_at: str | None = None,
    ):
        self.engine = engine
        self.sources = sources
        self.chunk_rows = chunk_rows
        self.progress = progress or (lambda step, done, total: None)
        # fault injection for the crash tests: the process dies at the named point
        self.die_at = die_at if die_at is not None else os.environ.get("SETTLEMENT_DIE_AT")
        self.events = TableRecorder(outbox)
        self.timings: dict[str, float] = {}

    def _maybe_die(self, point: str) -> None:
        if self.die_at == point:
            log.warning("SETTLEMENT_DIE_AT=%s: dying here", point)
            os._exit(137)

    def run(self, period: str, until: str | None = None) -> dict | None:
        """Settle ``period`` (which ``begin`` recorded) as far as it goes, or only ``until="imported"``;
        returns its status, or None when another batch holds the lock (it, or the resume timer,
        will finish the work). ``self.timings`` has the seconds each step took."""
        with self.engine.connect() as lock_connection:
            got = lock_connection.execute(text(f"SELECT pg_try_advisory_lock({BATCH_LOCK})")).scalar()
            lock_connection.commit()
            if not got:
                return None
            try:
                with Session(self.engine) as session:
                    # periods are settled in the order they were sealed: each charges the wallets
                    # as the one before left them
                    for earlier in self._unsettled_before(session, period):
                        try:
                            self._run_locked(session, earlier, None)
                        except SettlementFailed as exc:
                            raise SettlementFailed(f"{period} waits for {earlier}, which failed: {exc}") from exc
                    return self._run_locked(session, period, until)
            finally:
                lock_connection.execute(text(f"SELECT pg_advisory_unlock({BATCH_LOCK})"))
                lock_connection.commit()

    def _unsettled_before(self, session: Session, period: str) -> list[str]:
        earlier = session.execute(
            text(
                "SELECT e.period FROM settlement.settlements e JOIN settlement.settlements t ON t.period = :p "
                "WHERE e.state <> 'settled' AND (e.sealed_at, e.period) < (t.sealed_at, t.period) ORDER BY e.sealed_at, e.period"
            ),
            {"p": period},
        ).scalars().all()
        session.rollback()
        return list(earlier)

    def _timed(self, step: str, work, *args) -> None:
        started = time.perf_counter()
        work(*args)
        self.timings[step] = self.timings.get(step, 0.0) + time.perf_counter() - started

    def _run_locked(self, session: Session, period: str, until: str | None) -> dict:
        row = session.execute(text("SELECT * FROM settlement.settlements WHERE period = :p"), {"p": period}).mappings().first()
        if row is None:
            raise SettlementFailed(f"no settlement was begun for {period}")
        if row["state"] == "settled":
            return status(session, period)
        session.execute(
            text(
                "UPDATE settlement.settlements SET state = 'settling', reason = '', attempts = attempts + 1, "
                "started_at = coalesce(started_at, now()), updated_at = now() WHERE period = :p"
            ),
            {"p": period},
        )
        session.commit()
        try:
            if row["step"] in ("pending", "importing"):
                self._timed("move", self._import, session, row)
            if until == "imported":
                return status(session, period)
            self._timed("post", self._post, session, period)
        except Exception as exc:
            session.rollback()
            reason = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__
            session.execute(
                text("UPDATE settlement.settlements SET state = 'failed', reason = :r, updated_at = now() WHERE period = :p AND state <> 'settled'"),
                {"p": period, "r": reason},
            )
            session.commit()
            log.exception("settlement of %s failed: %s", period, reason)
            raise SettlementFailed(reason) from exc
        return status(session, period)

    # -- moving the clicks -----------------------------------------------------------------------

    def _import(self, session: Session, row) -> None:
        period = row["period"]
        name = partition_name(period)
        session.execute(
            text(
                f'CREATE TABLE IF NOT EXISTS settlement."{name}" PARTITION OF settlement.period_clicks '
                f"(period DEFAULT '{period}') FOR VALUES IN ('{period}')"
            )
        )
        session.execute(text("UPDATE settlement.settlements SET step = 'importing', updated_at = now() WHERE period = :p"), {"p": period})
        session.commit()
        after = row["cursor_user"]
        moved, expected = row["imported_clicks"], row["expected_clicks"]
        self.progress("importing", moved, expected)
        pending = self._ask_for_page(period, after)
        while True:
            page = pending.result()
            if page["count"] and not page["done"]:
                # the clicks service prepares the next page while this one is written here
                pending = self._ask_for_page(period, page["last"])
            if page["count"]:
                copy(session, f'COPY settlement."{name}" (user_id, thing_id, rank, clicks) FROM STDIN', _TextReader(page.pop("rows")))
                after = page["last"]
                moved += page["count"]
                updated = session.execute(
                    text(
                        "UPDATE settlement.settlements SET cursor_user = :u, imported_clicks = :n, "
                        "updated_at = now() WHERE period = :p AND step = 'importing'"
                    ),
                    {"u": after, "n": moved, "p": period},
                ).rowcount
                if updated != 1:
                    raise SettlementFailed(f"the settlement of {period} moved on under this batch")
                session.commit()
                self.progress("importing", moved, expected)
                self._maybe_die("import-chunk")
            if page["done"] or not page["count"]:
                break
        if moved != expected:
            raise SettlementFailed(f"moved {moved} clicks of {period}, but the period was sealed with {expected}")
        # the clicks arrived ordered by reader, so a block-range index finds one reader's clicks
        # (statements) for the price of a few pages, and builds in a blink
        session.execute(
            text(f'CREATE INDEX IF NOT EXISTS "{name}_by_reader" ON settlement."{name}" USING brin (user_id) WITH (pages_per_range = 8)')
        )
        session.commit()
        # The partition is complete and never changes again. One VACUUM now marks every page
        # all-visible and every row's commit known (hint bits), so the batch's scans of a million
        # clicks check no row's visibility and write no page back (they did: at five million
        # clicks, more than shared buffers hold); ANALYZE gives it statistics (a sample), so the
        # batch's statements are planned for a million clicks (hash aggregates, in parallel), not
        # for a default guess of a few thousand.
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text(f'VACUUM (ANALYZE) settlement."{name}"'))
        session.execute(text("UPDATE settlement.settlements SET step = 'imported', updated_at = now() WHERE period = :p"), {"p": period})
        session.commit()
        self._maybe_die("imported")

    def _ask_for_page(self, period: str, after: int | None):
        """A handle on the page after reader ``after``; asked ahead of need when RPC allows it."""
        ask_ahead = getattr(self.sources.export_clicks, "call_async", None)
        if ask_ahead is not None:
            return ask_ahead(period, after, self.chunk_rows)
        return _Ready(self.sources.export_clicks(period, after, self.chunk_rows))

    def _learn_owners(self, session: Session) -> None:
        """Things the owner replica has not heard of (an event still on its way): ask accounts,
        in chunks, so their shares go where the owners' shares of known things go."""
        unknown = session.execute(
            text(
                "SELECT s.thing_id FROM thing_shares s "
                "WHERE NOT EXISTS (SELECT 1 FROM settlement.things t WHERE t.thing_id = s.thing_id) ORDER BY s.thing_id"
            ),
        ).scalars().all()
        for start in range(0, len(unknown), 1000):
            owners.remember(session, self.sources.thing_owners(unknown[start : start + 1000]))

    # -- the split and the ledger -------------------------------------------------------------------

    def _post(self, session: Session, period: str) -> None:
        started = time.perf_counter()
        settlement = session.execute(
            text("SELECT policy, fee_bps, sealed_at FROM settlement.settlements WHERE period = :p FOR UPDATE"), {"p": period}
        ).first()
        params = {"p": period, "bps": settlement.fee_bps, "sealed": settlement.sealed_at}
        # the window over a million clicks sorts in memory instead of spilling to disk
        session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
        # compiling these few big statements costs more than it saves
        session.execute(text("SET LOCAL jit = off"))
        # the batch ANALYZEs its charges and credits so the statements after are planned for their
        # sizes (row counts and one period's share), not for the few details a 30,000-row sample
        # adds: a sample of 3,000 tells those as well, in a sixth of the time (16 ms against 98)
        session.execute(text("SET LOCAL default_statistics_target = 10"))
        escrow.lock(session)
        self.progress("posting", 0, 1)
        transaction_id = session.execute(
            text(
                "INSERT INTO settlement.transactions (kind, idempotency_key, details) "
                "VALUES ('period_settlement', 'settlement:' || CAST(:p AS text), jsonb_build_object('period', CAST(:p AS text))) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
            ),
            params,
        ).scalar()
        if transaction_id is None:
            raise SettlementFailed(f"the ledger already holds a settlement of {period}, but its record does not say so")
        params["t"] = transaction_id
        self._timed("charges", self._charge, session, params, settlement.policy)
        self._timed("split", self._credit, session, params)
        self._timed("ledger", self._post_ledger, session, params)
        totals = self._totals(session, params)
        escrow.release_owned(session, self.events)  # things whose owners accounts verified while this batch ran
        self._timed("events", self._announce, session, params, totals)
        session.execute(
            text(
                "UPDATE settlement.settlements SET state = 'settled', step = 'posted', totals = CAST(:totals AS jsonb), "
                "transaction_id = :t, settled_at = now(), updated_at = now() WHERE period = :p"
            ),
            {"p": period, "t": transaction_id, "totals": json.dumps(totals)},
        )
        self._maybe_die("posting")
        session.commit()
        self.progress("posted", 1, 1)
        # the steps, and the posting as a whole (commit included), for operators and bench-settlement
        seconds = {**{k: round(v, 2) for k, v in self.timings.items()}, "post": round(time.perf_counter() - started, 2)}
        log.info("period %s settled: %s; seconds per step: %s", period, totals, seconds)
        self._maybe_die("posted")

    def _charge(self, session: Session, params: dict, policy: str) -> None:
        """What each reader pays (``charge_amount`` of the budget in force at the seal and the
        wallet) and the fee on it (``platform_fee``)."""
        budget_at_seal = (
            "CASE WHEN b.changed_at <= :sealed THEN b.amount ELSE (SELECT h.amount FROM settlement.budget_changes h "
            "WHERE h.user_id = r.user_id AND h.changed_at <= :sealed ORDER BY h.changed_at DESC LIMIT 1) END"
        )
        charges = _new_period_table(session, "charges", params["p"])
        session.execute(
            text(
                f"""
                INSERT INTO {charges} (period, user_id, kind, amount, fee, clicks, wallet_id)
                SELECT :p, r.user_id, 'split', a.amount, settlement.platform_fee(a.amount, :bps), r.clicks, w.id
                FROM (SELECT user_id, clicks FROM settlement.period_clicks WHERE period = :p AND rank = 0) r
                LEFT JOIN settlement.budgets b ON b.user_id = r.user_id
                LEFT JOIN settlement.ledger_accounts w ON w.kind = 'wallet' AND w.owner_id = r.user_id
                CROSS JOIN LATERAL (SELECT settlement.charge_amount({budget_at_seal}, w.balance) AS amount) a
                """
            ),
            params,
        )
        if policy == "charity":
            # the readers charged above are looked up in the new table, which has no index yet:
            # statistics first, so that it is one hash anti-join, not a scan per budget
            session.execute(text(f"ANALYZE {charges}"))
            session.execute(
                text(
                    f"""
                    INSERT INTO {charges} (period, user_id, kind, amount, fee, clicks, wallet_id)
                    SELECT :p, r.user_id, 'charity', a.amount, 0, 0, w.id
                    FROM settlement.budgets r
                    LEFT JOIN settlement.budgets b ON b.user_id = r.user_id
                    JOIN settlement.ledger_accounts w ON w.kind = 'wallet' AND w.owner_id = r.user_id
                    CROSS JOIN LATERAL (SELECT settlement.charge_amount({budget_at_seal}, w.balance) AS amount) a
                    WHERE a.amount > 0
                      AND NOT EXISTS (SELECT 1 FROM {charges} c WHERE c.user_id = r.user_id)
                    """
                ),
                params,
            )
        _attach(session, "charges", charges, params["p"])

    def _credit(self, session: Session, params: dict) -> None:
        """Sum the readers' shares of each thing (``settlement.reader_shares``, the rule in
        ``rules.split_shares``). A reader's share of a thing they own goes back to their wallet
        (``own_shares``); the rest is the thing's credit, paid to a verified owner, else held in
        the thing's escrow."""
        # Per thing: the sum of its clicks' shares and their number. Tables made from queries (not
        # INSERTs) let PostgreSQL read the million clicks in parallel. Owners play no part in the
        # sums, so the pass over every click joins nothing but the charges.
        session.execute(
            text(
                "CREATE TEMPORARY TABLE thing_shares ON COMMIT DROP AS "
                "SELECT thing_id, sum(share) AS amount, count(*) AS clicks FROM settlement.reader_shares "
                "WHERE period = :p GROUP BY thing_id"
            ),
            params,
        )
        self._learn_owners(session)
        # Own clicks, now that the replica knows every clicked thing's owner: only a reader of
        # this period who owns a thing can have one, so the clicks are matched against those
        # (reader, thing) pairs alone, in one parallel pass.
        session.execute(
            text(
                """
                CREATE TEMPORARY TABLE own_clicks ON COMMIT DROP AS
                SELECT s.thing_id, s.user_id, s.share FROM settlement.reader_shares s
                JOIN (SELECT t.thing_id, t.owner_id FROM settlement.things t
                      JOIN settlement.charges ch ON ch.period = :p AND ch.user_id = t.owner_id) owned
                  ON owned.thing_id = s.thing_id AND owned.owner_id = s.user_id
                WHERE s.period = :p
                """
            ),
            params,
        )
        session.execute(
            text(
                "INSERT INTO settlement.own_shares (period, thing_id, user_id, amount, transaction_id) "
                "SELECT :p, thing_id, user_id, share, :t FROM own_clicks"
            ),
            params,
        )
        # a thing has one owner, so at most one own share (and click) per thing; a thing only its
        # owner clicked has no credit
        credits = _new_period_table(session, "credits", params["p"])
        session.execute(
            text(
                f"""
                INSERT INTO {credits} (period, thing_id, owner_id, amount, clicks, state, transaction_id)
                SELECT :p, s.thing_id, t.owner_id, s.amount - coalesce(o.share, 0), s.clicks - CAST(o.share IS NOT NULL AS integer),
                       CASE WHEN t.owner_id IS NOT NULL AND t.verified THEN 'paid' ELSE 'held' END, :t
                FROM thing_shares s LEFT JOIN settlement.things t ON t.thing_id = s.thing_id
                LEFT JOIN own_clicks o ON o.thing_id = s.thing_id
                WHERE o.share IS NULL OR s.clicks > 1
                """
            ),
            params,
        )
        _attach(session, "credits", credits, params["p"])

    def _post_ledger(self, session: Session, params: dict) -> None:
        session.execute(
            text(
                """
                INSERT INTO settlement.ledger_accounts (kind, owner_id)
                SELECT 'revenue', owner_id FROM settlement.credits WHERE period = :p AND state = 'paid' GROUP BY owner_id
                UNION ALL
                SELECT 'escrow', thing_id FROM settlement.credits WHERE period = :p AND state = 'held'
                ON CONFLICT DO NOTHING
                """
            ),
            params,
        )
        fees, charity = ledger.account(session, "fees"), ledger.account(session, "charity")
        # all postings of one transaction in one statement: the ledger's trigger checks the balance
        # of each statement's transactions. Sums are cast back to bigint, the postings' type: one
        # numeric branch makes the whole UNION numeric, and every wallet's posting converted twice.
        session.execute(
            text(
                """
                INSERT INTO settlement.postings (transaction_id, account_id, amount)
                SELECT :t, wallet_id, -amount FROM settlement.charges WHERE period = :p AND amount > 0
                UNION ALL
                SELECT :t, account, amount FROM (
                    SELECT CAST(sum(fee) AS bigint) AS fees, CAST(coalesce(sum(amount) FILTER (WHERE kind = 'charity'), 0) AS bigint) AS charity
                    FROM settlement.charges WHERE period = :p
                ) sums CROSS JOIN LATERAL (VALUES (CAST(:fees AS bigint), sums.fees), (CAST(:charity AS bigint), sums.charity)) v(account, amount) WHERE amount > 0
                UNION ALL
                SELECT :t, a.id, r.amount FROM (
                    SELECT owner_id, CAST(sum(amount) AS bigint) AS amount FROM settlement.credits
                    WHERE period = :p AND state = 'paid' GROUP BY owner_id HAVING sum(amount) > 0
                ) r JOIN settlement.ledger_accounts a ON a.kind = 'revenue' AND a.owner_id = r.owner_id
                UNION ALL
                SELECT :t, a.id, c.amount FROM settlement.credits c
                    JOIN settlement.ledger_accounts a ON a.kind = 'escrow' AND a.owner_id = c.thing_id
                    WHERE c.period = :p AND c.state = 'held' AND c.amount > 0
                UNION ALL
                SELECT :t, w.id, o.amount FROM (
                    SELECT user_id, CAST(sum(amount) AS bigint) AS amount FROM settlement.own_shares WHERE period = :p AND transaction_id = :t
                    GROUP BY user_id HAVING sum(amount) > 0
                ) o JOIN settlement.ledger_accounts w ON w.kind = 'wallet' AND w.owner_id = o.user_id
                """
            ),
            {**params, "fees": fees, "charity": charity},
        )

    def _totals(self, session: Session, params: dict) -> dict:
        """The settlement's figures, and the self-check that every charged cent went somewhere."""
        charges = session.execute(
            text(
                "SELECT coalesce(sum(amount) FILTER (WHERE kind = 'split'), 0) AS split, "
                "coalesce(sum(amount) FILTER (WHERE kind = 'charity'), 0) AS charity, coalesce(sum(fee), 0) AS fees, "
                "count(*) FILTER (WHERE kind = 'split') AS readers, count(*) FILTER (WHERE kind = 'split' AND amount > 0) AS charged_readers, "
                "count(*) FILTER (WHERE kind = 'charity') AS charity_readers, coalesce(sum(clicks), 0) AS clicks "
                "FROM settlement.charges WHERE period = :p"
            ),
            params,
        ).first()
        credits = session.execute(
            text(
                "SELECT coalesce(sum(amount) FILTER (WHERE state = 'paid'), 0) AS paid, "
                "coalesce(sum(amount) FILTER (WHERE state = 'held'), 0) AS held, count(*) AS things, "
                "count(DISTINCT owner_id) FILTER (WHERE state = 'paid') AS creators FROM settlement.credits WHERE period = :p"
            ),
            params,
        ).first()
        returned = int(
            session.execute(
                text("SELECT coalesce(sum(amount), 0) FROM settlement.own_shares WHERE period = :p AND transaction_id = :t"), params
            ).scalar()
        )
        expected_clicks = session.execute(text("SELECT expected_clicks FROM settlement.settlements WHERE period = :p"), params).scalar()
        if charges.clicks != expected_clicks:
            raise SettlementFailed(f"self-check: the readers' clicks add up to {charges.clicks}, the period has {expected_clicks}")
        charged = int(charges.split + charges.charity)
        accounted = int(charges.fees + charges.charity + credits.paid + credits.held) + returned
        if charged != accounted:
            raise SettlementFailed(f"self-check: charged {charged} but fees, charity, revenue, escrow and own shares add up to {accounted}")
        return {
            "clicks": int(charges.clicks),
            "readers": int(charges.readers),
            "charged_readers": int(charges.charged_readers),
            "charity_readers": int(charges.charity_readers),
            "things": int(credits.things),
            "creators": int(credits.creators),
            "charged": charged,
            "fees": int(charges.fees),
            "revenue": int(credits.paid),
            "escrow": int(credits.held),
            "charity": int(charges.charity),
            "returned": returned,
            "currency": CURRENCY,
        }

    def _announce(self, session: Session, params: dict, totals: dict) -> None:
        record_many(
            session,
            "settlement",
            "revenue.credited",
            "SELECT jsonb_build_object('user_id', owner_id, 'amount', sum(amount), 'currency', CAST(:currency AS text), 'source', 'settlement', "
            "'periods', jsonb_build_array(CAST(:p AS text)), 'things', count(*)) AS data "
            "FROM settlement.credits WHERE period = :p AND state = 'paid' GROUP BY owner_id HAVING sum(amount) > 0",
            {"p": params["p"], "currency": CURRENCY},
        )
        money_flows.refresh_means_many(session, "SELECT user_id FROM settlement.charges WHERE period = :p AND amount > 0", {"p": params["p"]})
        self.events.record(session, "period.settled", {"period": params["p"], **totals})



class _TextReader:
    """A page of COPY text as the file ``COPY ... FROM STDIN`` reads, in slices: io.StringIO would
    hold a second copy of the whole page, at four bytes a character."""

    def __init__(self, rows: str):
        self.rows = rows
        self.at = 0

    def read(self, size: int = -1) -> str:
        end = len(self.rows) if size is None or size < 0 else self.at + size
        piece = self.rows[self.at : end]
        self.at += len(piece)
        return piece


class _Ready:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value
