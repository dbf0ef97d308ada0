"""make bench-settlement: settle a period of 1,000,000 clicks by 100,000 readers over 20,000 things.

Reference, measured in the same run in the same database: a bare ``INSERT ... SELECT`` copying
1,000,000 rows of three integers (median of three).

Figures:
- ``ratio``: the settlement batch once the period's clicks are in the settlement service's hands
  (charges, the split, the ledger posting, events and means; the commit), run in this
  process on period A, against the reference. Goal: within 8x.
- ``e2e_ratio``: from "close the period" (the clicks service's RPC) to "settled", moving the clicks
  included, with the clicks service and the settlement batch runner as their own processes, on
  period B. Goal: within 15x.
- peak memory (VmHWM) of the batch runner process, before and after settling period B.

Afterwards the ledger check must hold and the totals must match the clicks exactly.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from nameko.standalone.rpc import ClusterRpcProxy
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from bench.common import private_environment, progress, say, service_env, spawn, stop
from services.common import topology
from services.common.db import dispose_engines, engine_for
from services.settlement import batch, ledger

READERS = int(os.environ.get("BENCH_READERS", "100000"))
THINGS = int(os.environ.get("BENCH_THINGS", "20000"))
CLICKS_PER_READER = 10  # exactly: READERS x 10 clicks
CREATORS = THINGS // 10
UNCLAIMED_EVERY = 10  # every 10th thing has no owner yet: its shares go to escrow


def seed_people(url: str) -> None:
    """Readers with budgets and funded wallets (one deposit each, as the deposit flow posts them),
    creators, and things (one in ten unclaimed), in the settlement's replicas."""
    engine = create_engine(url)
    steps = 4
    with engine.begin() as conn:
        progress("seeding people", 0, steps)
        conn.execute(
            text(
                "INSERT INTO settlement.budgets (user_id, amount, changed_at) "
                "SELECT u, 200 + (u * 37) % 1800, now() - interval '40 days' FROM generate_series(1, :n) u"
            ),
            {"n": READERS},
        )
        conn.execute(text("INSERT INTO settlement.budget_changes (user_id, amount, changed_at) SELECT user_id, amount, changed_at FROM settlement.budgets"))
        conn.execute(text("INSERT INTO settlement.means (user_id, has_means) SELECT user_id, true FROM settlement.budgets"))
        progress("seeding people", 1, steps)
        # wallets: enough for two periods, except every 20th reader, who holds less than one budget
        conn.execute(text("INSERT INTO settlement.ledger_accounts (kind, owner_id) VALUES ('clearing', NULL)"))
        conn.execute(text("INSERT INTO settlement.ledger_accounts (kind, owner_id) SELECT 'wallet', user_id FROM settlement.budgets"))
        conn.execute(
            text(
                "INSERT INTO settlement.transactions (kind, idempotency_key, details) "
                "SELECT 'deposit', 'deposit:' || user_id || '.seed', jsonb_build_object('user_id', user_id) FROM settlement.budgets"
            )
        )
        progress("seeding people", 2, steps)
        conn.execute(
            text(
                """
                WITH d AS (
                    SELECT t.id AS tx, b.user_id, w.id AS wallet,
                           CASE WHEN b.user_id % 20 = 0 THEN b.amount / 2 + 1 ELSE b.amount * 2 + 150 END AS amount
                    FROM settlement.budgets b
                    JOIN settlement.transactions t ON t.idempotency_key = 'deposit:' || b.user_id || '.seed'
                    JOIN settlement.ledger_accounts w ON w.kind = 'wallet' AND w.owner_id = b.user_id
                ), ins AS (
                    INSERT INTO settlement.deposits (user_id, amount, idempotency_key, provider_ref, state, transaction_id)
                    SELECT user_id, amount, 'seed', 'seed-' || user_id, 'completed', tx FROM d RETURNING 1
                )
                INSERT INTO settlement.postings (transaction_id, account_id, amount)
                SELECT tx, wallet, amount FROM d
                UNION ALL
                SELECT tx, (SELECT id FROM settlement.ledger_accounts WHERE kind = 'clearing'), -amount FROM d
                """
            )
        )
        progress("seeding people", 3, steps)
        conn.execute(
            text(
                "INSERT INTO settlement.things (thing_id, owner_id, verified, changed_at) "
                "SELECT t, CASE WHEN t % :every = 0 THEN NULL ELSE :first_creator + t % :creators END, t % :every <> 0, now() "
                "FROM generate_series(1, :things) t"
            ),
            {"every": UNCLAIMED_EVERY, "first_creator": READERS + 1, "creators": CREATORS, "things": THINGS},
        )
        progress("seeding people", steps, steps)
    engine.dispose()


def seed_clicks(url: str, period: str) -> int:
    """Ten distinct things per reader in the open period ``period``, as the click workers commit them."""
    engine = create_engine(url)
    chunks = 10
    per_chunk = READERS // chunks
    for i in range(chunks):
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO clicks.clicks (period_id, user_id, thing_id, request_id, source) "
                    "SELECT :p, u, 1 + (u * 37 + k * 1999) % :things, gen_random_uuid(), 'api' "
                    "FROM generate_series(:lo, :hi) u, generate_series(0, :k - 1) k"
                ),
                {"p": period, "things": THINGS, "lo": i * per_chunk + 1, "hi": (i + 1) * per_chunk, "k": CLICKS_PER_READER},
            )
        progress(f"seeding clicks of {period}", i + 1, chunks)
    with engine.connect() as conn:
        # a month-old clicks table has been vacuumed many times over; so is this one
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE clicks.clicks"))
        count = conn.execute(text("SELECT count(*) FROM clicks.clicks WHERE period_id = :p"), {"p": period}).scalar()
    engine.dispose()
    return count


def reference(url: str) -> float:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE public.bench_source AS SELECT g AS a, g % 1000 AS b, g % 7 AS c FROM generate_series(1, 1000000) g"))
        conn.execute(text("ANALYZE public.bench_source"))
    times = []
    for i in range(3):
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE public.bench_copy (a integer, b integer, c integer)"))
        with engine.begin() as conn:
            started = time.perf_counter()
            conn.execute(text("INSERT INTO public.bench_copy SELECT a, b, c FROM public.bench_source"))
        times.append(time.perf_counter() - started)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE public.bench_copy"))
        progress("reference INSERT ... SELECT", i + 1, 3)
    engine.dispose()
    return statistics.median(times)


def open_period(amqp_uri: str) -> str:
    with ClusterRpcProxy({"AMQP_URI": amqp_uri, "serializer": "json"}) as cluster:
        return cluster.clicks.open_period()["id"]


def close_period(amqp_uri: str) -> dict:
    with ClusterRpcProxy({"AMQP_URI": amqp_uri, "serializer": "json"}) as cluster:
        return cluster.clicks.close_period()


def wait_for_rpc(amqp_uri: str, service: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with ClusterRpcProxy({"AMQP_URI": amqp_uri, "serializer": "json"}, timeout=2) as cluster:
                getattr(cluster, service).health()
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def batch_in_process(url: str, amqp_uri: str, period: str, clicks: int) -> dict:
    """Period A: move its clicks, then time the batch proper on clicks already in settlement's hands."""
    with Session(engine_for(url)) as session:
        sealed_at = session.execute(text("SELECT sealed_at FROM clicks.periods WHERE id = :p"), {"p": period}).scalar()
        batch.begin(session, period, sealed_at, clicks, "rollover", 1000)
        session.commit()
    with ClusterRpcProxy({"AMQP_URI": amqp_uri, "serializer": "json"}) as cluster:
        runner = batch.Batch(
            engine_for(url),
            batch.Sources(export_clicks=cluster.clicks.export_clicks, thing_owners=cluster.accounts.thing_owners),
            progress=lambda step, done, total: progress(f"period {period}: {step}", done, total),
        )
        runner.run(period, until="imported")
        started = time.perf_counter()
        result = runner.run(period)
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "timings": dict(runner.timings), "result": result}


def main() -> None:
    say(f"settlement benchmark: {READERS:,} readers x {CLICKS_PER_READER} clicks over {THINGS:,} things")
    with private_environment("settlement") as (url, amqp_uri):
        topology.declare(amqp_uri)
        logs = Path(tempfile.mkdtemp(prefix="bench-settlement-"))
        env = service_env(url, amqp_uri, OUTBOX_POLL_SECONDS="0.05")
        processes = [spawn("services.clicks", env, logs / "clicks.log"), spawn("services.accounts", env, logs / "accounts.log")]
        try:
            wait_for_rpc(amqp_uri, "clicks")
            wait_for_rpc(amqp_uri, "accounts")
            seed_people(url)
            period_a = open_period(amqp_uri)
            clicks_a = seed_clicks(url, period_a)
            base = reference(url)
            say(f"reference: INSERT ... SELECT of 1,000,000 rows of three integers: {base:.3f} s (median of 3)")

            # period A: the batch proper, in this process (no runner is listening yet)
            close_period(amqp_uri)
            a = batch_in_process(url, amqp_uri, period_a, clicks_a)
            t = a["timings"]
            say(
                f"period {period_a}: {clicks_a:,} clicks moved in {t['move']:.2f} s; batch {a['seconds']:.2f} s "
                f"(charges {t['charges']:.2f}, split {t['split']:.2f}, ledger {t['ledger']:.2f}, events and means {t['events']:.2f}, "
                f"commit and the rest {a['seconds'] - t['charges'] - t['split'] - t['ledger'] - t['events']:.2f})"
            )

            # period B: close to settled through the services, the runner as its own process
            period_b = open_period(amqp_uri)
            clicks_b = seed_clicks(url, period_b)
            runner = spawn("services.settlement.run_batch", {**env, "LOG_LEVEL": "INFO"}, logs / "batch.log")
            processes.append(runner)
            wait_for_rpc(amqp_uri, "settlement_batch")
            rss_before = memory_kb(runner.pid, "VmRSS")
            started = time.perf_counter()
            close_period(amqp_uri)
            engine = create_engine(url)
            state = None
            while state != "settled":
                time.sleep(0.05)
                with engine.connect() as conn:
                    state = conn.execute(text("SELECT state FROM settlement.settlements WHERE period = :p"), {"p": period_b}).scalar()
                if state == "failed" or time.perf_counter() - started > 600:
                    raise SystemExit(f"period {period_b} did not settle (state {state}); see {logs}/batch.log")
            e2e = time.perf_counter() - started
            peak = memory_kb(runner.pid, "VmHWM")
            say(f"period {period_b}: close to settled {e2e:.2f} s, {clicks_b:,} clicks (the runner's log: {logs}/batch.log)")
            say(f"batch runner memory: {rss_before / 1024:.0f} MB before, peak {peak / 1024:.0f} MB (chunks of 250,000 clicks)")

            with Session(engine) as session:
                check = ledger.check(session)
                for period, clicks in ((period_a, clicks_a), (period_b, clicks_b)):
                    totals = batch.status(session, period)["totals"]
                    assert totals["clicks"] == clicks, (period, totals)
                    assert totals["charged"] == totals["fees"] + totals["revenue"] + totals["escrow"] + totals["charity"] + totals["returned"]
            engine.dispose()
            say(f"ledger check: {'ok' if check['ok'] else 'BROKEN ' + '; '.join(check['failures'])}; clicks counted exactly")
            if not check["ok"]:
                raise SystemExit(1)
        finally:
            stop(processes)
            dispose_engines()
    ratio = a["seconds"] / base
    e2e_ratio = e2e / base
    say(f"ratio={ratio:.2f} e2e_ratio={e2e_ratio:.2f} (goals: within 8x and 15x; lower is better)")


if __name__ == "__main__":
    main()
