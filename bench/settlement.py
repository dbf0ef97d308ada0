"""make bench-settlement: settle a period of 1,000,000 clicks by 100,000 readers over 20,000 things.

Reference, measured in the same run in the same database: a bare ``INSERT ... SELECT`` copying
1,000,000 rows of three integers (median of three).

Figures:
- ``ratio``: the settlement batch once the period's clicks are in the settlement service's hands
  (charges, the split, the ledger posting, events and means; the commit), run in this process,
  against the reference. This machine's speed swings by tens of percent from one minute to the
  next (the same code gave 3.9 to 5.6 in four single runs), so the figure is the median of
  ``BENCH_TRIALS`` (default 5) trials: each trial settles a period of its own, with the reference
  measured just before its batch, and its ratio is its batch over that reference. Every trial
  starts from the same wallets (the readers short of a budget are topped up to less than one
  budget again), so each does the same work. Goal: within 4x.
- ``e2e_ratio``: from "close the period" (the clicks service's RPC) to "settled", moving the clicks
  included, with the clicks service and the settlement batch runner as their own processes, on
  period B. Goal: within 15x.
- peak memory (VmHWM) of the batch runner process, before and after settling period B.
- the scale run (``BENCH_SCALE``, default ``1,5``: millions of clicks): for each size, a private
  database and virtual host of its own with the population scaled alike (100,000 readers and
  20,000 things per million clicks, ten clicks each), one period settled from "close" by a fresh
  batch runner process; seconds per million clicks for the batch proper (the runner's own timing)
  and for close-to-settled, and the runner's peak RSS (VmHWM) for that size; each size also
  measures the reference just before its batch (the machine's speed drifts between sizes), and the
  ratio is shown in units of it as well. Goals: the batch's
  seconds per million at the largest size within 1.2x of the smallest's, peak RSS within 10%.
  ``BENCH_SCALE=`` (empty) leaves it out.

Every measurement starts after a CHECKPOINT, so that no checkpoint left over from the seeding
writes under it. Afterwards the ledger check must hold and the totals must match the clicks
exactly, for every period settled.
"""
from __future__ import annotations

import ast
import os
import re
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
UNCLAIMED_EVERY = 10  # every 10th thing has no owner yet: its shares go to escrow
# the scale run's sizes, in millions of clicks (READERS and THINGS per million)
SCALE = [int(m) for m in os.environ.get("BENCH_SCALE", "1,5").replace(" ", "").split(",") if m and m != "0"]
SCALE_BATCH_GOAL = 1.2  # the batch's seconds per million at the largest size over the smallest's
SCALE_MEMORY_GOAL = 0.10  # the runner's peak RSS at the largest size against the smallest's
RATIO_GOAL = 4.0  # the 1M batch against the reference measured just before it: the median of the trials
TRIALS = max(1, int(os.environ.get("BENCH_TRIALS", "5")))
SHORT_EVERY = 20  # every 20th reader's wallet holds less than one budget when a period is settled


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def checkpoint(url: str) -> None:
    """Write out what the seeding left in shared buffers and WAL now, not during a measurement."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("CHECKPOINT"))
    engine.dispose()


def seed_people(url: str, readers: int = READERS, things: int = THINGS, periods: int = 2) -> None:
    """Readers with budgets and wallets funded for ``periods`` periods (one deposit each, as the
    deposit flow posts them), creators, and things (one in ten unclaimed), in the settlement's replicas."""
    creators = things // 10
    engine = create_engine(url)
    steps = 4
    with engine.begin() as conn:
        progress("seeding people", 0, steps)
        conn.execute(
            text(
                "INSERT INTO settlement.budgets (user_id, amount, changed_at) "
                "SELECT u, 200 + (u * 37) % 1800, now() - interval '40 days' FROM generate_series(1, :n) u"
            ),
            {"n": readers},
        )
        conn.execute(text("INSERT INTO settlement.budget_changes (user_id, amount, changed_at) SELECT user_id, amount, changed_at FROM settlement.budgets"))
        conn.execute(text("INSERT INTO settlement.means (user_id, has_means) SELECT user_id, true FROM settlement.budgets"))
        progress("seeding people", 1, steps)
        conn.execute(text("INSERT INTO settlement.ledger_accounts (kind, owner_id) VALUES ('clearing', NULL)"))
        conn.execute(text("INSERT INTO settlement.ledger_accounts (kind, owner_id) SELECT 'wallet', user_id FROM settlement.budgets"))
        progress("seeding people", 2, steps)
        # wallets: enough for every period, except every 20th reader's, which holds less than one budget
        deposit(conn, "seed", f"CASE WHEN b.user_id % {SHORT_EVERY} = 0 THEN b.amount / 2 + 1 ELSE b.amount * {periods} + 150 END")
        progress("seeding people", 3, steps)
        conn.execute(
            text(
                "INSERT INTO settlement.things (thing_id, owner_id, verified, changed_at) "
                "SELECT t, CASE WHEN t % :every = 0 THEN NULL ELSE :first_creator + t % :creators END, t % :every <> 0, now() "
                "FROM generate_series(1, :things) t"
            ),
            {"every": UNCLAIMED_EVERY, "first_creator": readers + 1, "creators": creators, "things": things},
        )
        progress("seeding people", steps, steps)
    with engine.connect() as conn:
        # the deposits are a month old: autovacuum has long been through the wallets they updated
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE settlement.ledger_accounts, settlement.postings, settlement.budgets, settlement.means"))
    engine.dispose()


def deposit(conn, tag: str, amount_sql: str, where_sql: str = "true") -> None:
    """A completed deposit of ``amount_sql`` (an expression over the budget ``b``) into each
    matching reader's wallet, posted as the deposit flow posts one: a transaction, the deposit,
    and its two postings."""
    conn.execute(
        text(
            "INSERT INTO settlement.transactions (kind, idempotency_key, details) "
            f"SELECT 'deposit', 'deposit:' || b.user_id || '.{tag}', jsonb_build_object('user_id', b.user_id) FROM settlement.budgets b WHERE {where_sql}"
        )
    )
    conn.execute(
        text(
            f"""
            WITH d AS (
                SELECT t.id AS tx, b.user_id, w.id AS wallet, {amount_sql} AS amount
                FROM settlement.budgets b
                JOIN settlement.transactions t ON t.idempotency_key = 'deposit:' || b.user_id || '.{tag}'
                JOIN settlement.ledger_accounts w ON w.kind = 'wallet' AND w.owner_id = b.user_id
                WHERE {where_sql}
            ), ins AS (
                INSERT INTO settlement.deposits (user_id, amount, idempotency_key, provider_ref, state, transaction_id)
                SELECT user_id, amount, '{tag}', '{tag}-' || user_id, 'completed', tx FROM d RETURNING 1
            )
            INSERT INTO settlement.postings (transaction_id, account_id, amount)
            SELECT tx, wallet, amount FROM d
            UNION ALL
            SELECT tx, (SELECT id FROM settlement.ledger_accounts WHERE kind = 'clearing'), -amount FROM d
            """
        )
    )


def top_up_short_wallets(url: str, tag: str) -> None:
    """The readers whose wallets held less than one budget were charged all of it: give them less
    than one budget again (and their means back), so the next period is settled like the last."""
    engine = create_engine(url)
    with engine.begin() as conn:
        deposit(conn, tag, "b.amount / 2 + 1", f"b.user_id % {SHORT_EVERY} = 0")
        conn.execute(text(f"UPDATE settlement.means SET has_means = true WHERE user_id % {SHORT_EVERY} = 0"))
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE settlement.ledger_accounts, settlement.means"))
    engine.dispose()


def seed_clicks(url: str, period: str, readers: int = READERS, things: int = THINGS) -> int:
    """Ten distinct things per reader in the open period ``period``, as the click workers commit them:
    set-based, 10,000 readers (100,000 clicks) per statement."""
    engine = create_engine(url)
    per_chunk = min(readers, 10000)
    chunks = -(-readers // per_chunk)
    for i in range(chunks):
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO clicks.clicks (period_id, user_id, thing_id, request_id, source) "
                    "SELECT :p, u, 1 + (u * 37 + k * 1999) % :things, gen_random_uuid(), 'api' "
                    "FROM generate_series(:lo, :hi) u, generate_series(0, :k - 1) k"
                ),
                {"p": period, "things": things, "lo": i * per_chunk + 1, "hi": min(readers, (i + 1) * per_chunk), "k": CLICKS_PER_READER},
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
        conn.execute(text("DROP TABLE IF EXISTS public.bench_source"))  # the previous trial's
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


def batch_trial(url: str, amqp_uri: str, trial: int) -> dict:
    """One trial: a period of its own seeded and moved, the reference measured just before its
    batch (each after a CHECKPOINT), then the batch proper in this process."""
    period = open_period(amqp_uri)
    clicks = seed_clicks(url, period)
    checkpoint(url)
    reference_seconds = reference(url)
    checkpoint(url)  # what the reference wrote
    close_period(amqp_uri)
    figures = batch_in_process(url, amqp_uri, period, clicks)
    t = figures["timings"]
    say(
        f"trial {trial}, period {period}: {clicks:,} clicks moved in {t['move']:.2f} s; reference {reference_seconds:.3f} s (median of 3); "
        f"batch {figures['seconds']:.2f} s = {figures['seconds'] / reference_seconds:.2f}x "
        f"(charges {t['charges']:.2f}, split {t['split']:.2f}, ledger {t['ledger']:.2f}, events and means {t['events']:.2f}, "
        f"commit and the rest {figures['seconds'] - t['charges'] - t['split'] - t['ledger'] - t['events']:.2f}; {load()})"
    )
    return {"period": period, "clicks": clicks, "seconds": figures["seconds"], "reference": reference_seconds, "timings": t}


def runner_timings(log_path: Path, period: str) -> dict:
    """The seconds of each step, as the batch runner logged them when it settled ``period``."""
    pattern = re.compile(rf"period {re.escape(period)} settled: .*seconds per step: (\{{[^}}]*\}})")
    deadline = time.monotonic() + 10  # the runner logs it just after its commit, which the bench may see first
    while time.monotonic() < deadline:
        for line in log_path.read_text().splitlines():
            found = pattern.search(line)
            if found:
                return ast.literal_eval(found.group(1))
        time.sleep(0.05)
    raise SystemExit(f"the batch runner did not log the settlement of {period}; see {log_path}")


def settle_with_runner(url: str, amqp_uri: str, env: dict, log_path: Path, period: str) -> tuple[dict, object]:
    """Close ``period`` and wait until a fresh batch runner process has settled it: close to settled,
    the runner's own step timings, its memory. Returns the figures and the (still running) runner."""
    runner = spawn("services.settlement.run_batch", {**env, "LOG_LEVEL": "INFO"}, log_path)
    engine = create_engine(url)
    try:
        wait_for_rpc(amqp_uri, "settlement_batch")
        rss_before = memory_kb(runner.pid, "VmRSS")
        started = time.perf_counter()
        close_period(amqp_uri)
        state = None
        # the runner's resident memory, sampled while it moves the clicks and while it posts
        rss = {"moving": 0, "posting": 0}
        while state != "settled":
            time.sleep(0.05)
            with engine.connect() as conn:
                row = conn.execute(text("SELECT state, step FROM settlement.settlements WHERE period = :p"), {"p": period}).first()
            state, step = row if row else (None, None)
            phase = "moving" if step in (None, "pending", "importing") else "posting"
            rss[phase] = max(rss[phase], memory_kb(runner.pid, "VmRSS"))
            if state == "failed" or runner.poll() is not None or time.perf_counter() - started > 1800:
                raise SystemExit(f"period {period} did not settle (state {state}); see {log_path}")
        e2e = time.perf_counter() - started
        peak = memory_kb(runner.pid, "VmHWM")
        timings = runner_timings(log_path, period)
    except BaseException:
        stop([runner])
        raise
    finally:
        engine.dispose()
    return {"e2e": e2e, "rss_before_kb": rss_before, "peak_kb": peak, "rss_kb": rss, "timings": timings}, runner


def check_settled(url: str, periods: list[tuple[str, int]]) -> None:
    """The ledger check holds and every period's totals match its clicks exactly."""
    engine = create_engine(url)
    with Session(engine) as session:
        check = ledger.check(session)
        for period, clicks in periods:
            totals = batch.status(session, period)["totals"]
            assert totals["clicks"] == clicks, (period, totals)
            assert totals["charged"] == totals["fees"] + totals["revenue"] + totals["escrow"] + totals["charity"] + totals["returned"]
    engine.dispose()
    say(f"ledger check: {'ok' if check['ok'] else 'BROKEN ' + '; '.join(check['failures'])}; clicks counted exactly")
    if not check["ok"]:
        raise SystemExit(1)


def memory(figures: dict) -> str:
    rss = figures["rss_kb"]
    return f"up to {rss['moving'] / 1024:.0f} MB while moving the clicks, {rss['posting'] / 1024:.0f} MB while posting"


def steps(timings: dict, per: float = 1.0) -> str:
    return ", ".join(f"{step} {timings.get(step, 0.0) / per:.2f}" for step in ("charges", "split", "ledger", "events"))


def scale_point(millions: int) -> dict:
    """One period of ``millions`` million clicks, in an environment of its own, settled from "close"
    by a fresh batch runner process."""
    readers, things = READERS * millions, THINGS * millions
    label = f"{readers * CLICKS_PER_READER / 1e6:g}M"
    say(f"scale {label}: {readers:,} readers x {CLICKS_PER_READER} clicks over {things:,} things ({load()})")
    with private_environment(f"settlement{millions}m") as (url, amqp_uri):
        topology.declare(amqp_uri)
        logs = Path(tempfile.mkdtemp(prefix=f"bench-settlement-{millions}m-"))
        env = service_env(url, amqp_uri, OUTBOX_POLL_SECONDS="0.05")
        processes = [spawn("services.clicks", env, logs / "clicks.log"), spawn("services.accounts", env, logs / "accounts.log")]
        try:
            wait_for_rpc(amqp_uri, "clicks")
            wait_for_rpc(amqp_uri, "accounts")
            started = time.perf_counter()
            seed_people(url, readers, things)
            period = open_period(amqp_uri)
            clicks = seed_clicks(url, period, readers, things)
            say(f"scale {label}: seeded {clicks:,} clicks in {time.perf_counter() - started:.0f} s")
            checkpoint(url)
            # this machine's speed drifts by tens of percent over minutes: each size gets its own
            # reference, measured just before its batch, to tell drift from growth
            base = reference(url)
            checkpoint(url)
            figures, runner = settle_with_runner(url, amqp_uri, env, logs / "batch.log", period)
            processes.append(runner)
            check_settled(url, [(period, clicks)])
        finally:
            stop(processes)
            dispose_engines()
    t = figures["timings"]
    per = clicks / 1e6
    point = {"label": label, "clicks": clicks, "batch": t["post"], "e2e": figures["e2e"], "move": t.get("move", 0.0),
             "peak_kb": figures["peak_kb"], "timings": t, "reference": base}
    say(
        f"scale {label}: batch {t['post']:.2f} s = {t['post'] / per:.2f} s/M ({steps(t, per)} s/M); move {point['move'] / per:.2f} s/M; "
        f"close to settled {figures['e2e']:.2f} s = {figures['e2e'] / per:.2f} s/M; its own reference {base:.3f} s "
        f"(batch {t['post'] / per / base:.2f}x it per million); runner peak RSS {figures['peak_kb'] / 1024:.0f} MB "
        f"({figures['rss_before_kb'] / 1024:.0f} MB before; sampled: {memory(figures)}; {load()}; log {logs}/batch.log)"
    )
    return point


def scale_line(points: list[dict]) -> str:
    small, large = points[0], points[-1]
    per = {id(p): p["clicks"] / 1e6 for p in points}
    batch_small, batch_large = small["batch"] / per[id(small)], large["batch"] / per[id(large)]
    e2e_small, e2e_large = small["e2e"] / per[id(small)], large["e2e"] / per[id(large)]
    batch_ratio, e2e_ratio = batch_large / batch_small, e2e_large / e2e_small
    # the same ratio with each size's batch in units of its own reference (drift of the machine out)
    relative = (batch_large / large["reference"]) / (batch_small / small["reference"])
    memory = (large["peak_kb"] - small["peak_kb"]) / small["peak_kb"]
    s, l = small["label"], large["label"]
    return (
        f"scale: {s} {batch_small:.2f} s/M, {l} {batch_large:.2f} s/M (ratio {batch_ratio:.2f}, goal <= {SCALE_BATCH_GOAL}; "
        f"{relative:.2f} in units of each size's reference); "
        f"close to settled {s} {e2e_small:.2f} s/M, {l} {e2e_large:.2f} s/M (ratio {e2e_ratio:.2f}); "
        f"peak RSS {small['peak_kb'] / 1024:.0f} MB vs {large['peak_kb'] / 1024:.0f} MB ({memory * 100:+.1f}%, goal within {SCALE_MEMORY_GOAL * 100:.0f}%); "
        f"{s} batch {small['batch'] / small['reference']:.2f}x its reference; "
        f"{'met' if batch_ratio <= SCALE_BATCH_GOAL and abs(memory) <= SCALE_MEMORY_GOAL else 'NOT met'}"
    )


def main() -> None:
    say(f"settlement benchmark: {READERS:,} readers x {CLICKS_PER_READER} clicks over {THINGS:,} things ({load()})")
    with private_environment("settlement") as (url, amqp_uri):
        topology.declare(amqp_uri)
        logs = Path(tempfile.mkdtemp(prefix="bench-settlement-"))
        env = service_env(url, amqp_uri, OUTBOX_POLL_SECONDS="0.05")
        processes = [spawn("services.clicks", env, logs / "clicks.log"), spawn("services.accounts", env, logs / "accounts.log")]
        try:
            wait_for_rpc(amqp_uri, "clicks")
            wait_for_rpc(amqp_uri, "accounts")
            # the trials' periods, then period B
            seed_people(url, periods=TRIALS + 1)
            trials = []
            for trial in range(1, TRIALS + 1):
                if trial > 1:
                    top_up_short_wallets(url, f"topup{trial}")
                trials.append(batch_trial(url, amqp_uri, trial))
            ratios = sorted(t["seconds"] / t["reference"] for t in trials)
            base = statistics.median(t["reference"] for t in trials)

            # period B: close to settled through the services, the runner as its own process
            period_b = open_period(amqp_uri)
            clicks_b = seed_clicks(url, period_b)
            checkpoint(url)
            b, runner = settle_with_runner(url, amqp_uri, env, logs / "batch.log", period_b)
            processes.append(runner)
            e2e = b["e2e"]
            say(f"period {period_b}: close to settled {e2e:.2f} s, {clicks_b:,} clicks; batch {b['timings']['post']:.2f} s ({steps(b['timings'])}) "
                f"(the runner's log: {logs}/batch.log)")
            say(f"batch runner memory: {b['rss_before_kb'] / 1024:.0f} MB before, peak {b['peak_kb'] / 1024:.0f} MB (chunks of 250,000 clicks; sampled: {memory(b)})")
            check_settled(url, [(t["period"], t["clicks"]) for t in trials] + [(period_b, clicks_b)])
        finally:
            stop(processes)
            dispose_engines()
    points = [scale_point(millions) for millions in SCALE]
    ratio = statistics.median(ratios)
    e2e_ratio = e2e / base
    if len(points) > 1:
        say(scale_line(points))
    each = "; ".join(f"{t['seconds'] / t['reference']:.2f} ({t['seconds']:.2f} s against {t['reference']:.3f} s)" for t in trials)
    say(f"trials, in order: {each}")
    say(
        f"ratio={ratio:.2f} e2e_ratio={e2e_ratio:.2f} (ratio: the median of {len(ratios)} trials; e2e against the trials' median reference; "
        f"goals: within {RATIO_GOAL:g}x and 15x; lower is better; {load()})"
    )


if __name__ == "__main__":
    main()
