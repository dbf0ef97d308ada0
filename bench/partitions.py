"""make bench-partitions: what the clicks table's partitions cost an operator, at a scale.

1. The upgrade: a clicks schema before partitioning (migration 0004) holding ``BENCH_CLICKS``
   clicks (default 1,000,000), half in a sealed period and half in the open one, migrated to the
   partitioned table (0005): seconds and clicks a second.
   The sealed period's partition's size on disk per million clicks.
2. The archive of the sealed half (``services.clicks.partitions.archive``: detach, gzipped CSV,
   drop): seconds, clicks a second, and the file's size per million clicks.
3. Meanwhile the click path: one batch of 500 click requests resolved in the open period, timed
   while the archive runs against the same batch with nothing else running (median of each).

Afterwards every click is counted: the archive file's rows plus the table's equal what was put in.
"""
from __future__ import annotations

import gzip
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg2
from sqlalchemy import create_engine, text

from bench.common import private_environment, progress, say
from services.clicks import ingest, partitions
from services.common.migrate import downgrade, upgrade

CLICKS = int(os.environ.get("BENCH_CLICKS", "1000000"))
SEALED = "2026-10"
READERS = max(CLICKS // 10, 1)
THINGS = 20000


def seed_old_schema(url: str) -> str:
    engine = create_engine(url)
    with engine.begin() as conn:
        open_id = conn.execute(text("SELECT id FROM clicks.periods WHERE state = 'open'")).scalar()
        conn.execute(
            text("INSERT INTO clicks.periods (id, seq, state, starts_at, sealed_at) VALUES (:p, 0, 'sealed', '2026-10-01', '2026-11-01')"),
            {"p": SEALED},
        )
        conn.execute(
            text("INSERT INTO clicks.things (thing_id, owner_id, url, title, changed_at) SELECT t, NULL, 'https://bench.example/' || t, '', now() FROM generate_series(1, :n) t"),
            {"n": THINGS},
        )
        conn.execute(
            text("INSERT INTO clicks.means (user_id, has_means, changed_at) SELECT u, true, now() FROM generate_series(1, :n) u"),
            {"n": READERS * 2},
        )
    chunks = 10
    per_chunk = CLICKS // chunks
    for i in range(chunks):
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO clicks.clicks (period_id, user_id, thing_id, request_id, source) "
                    # ten distinct things per reader; every other reader's clicks in the sealed period
                    "SELECT CASE WHEN (g / 10) % 2 = 0 THEN :sealed ELSE :open END, 1 + g / 10, "
                    "1 + ((g / 10) * 37 + (g % 10) * 1999) % :things, gen_random_uuid(), 'api' "
                    "FROM generate_series(:lo, :hi) g"
                ),
                {"sealed": SEALED, "open": open_id, "things": THINGS, "lo": i * per_chunk, "hi": (i + 1) * per_chunk - 1},
            )
        progress("seeding clicks in the old table", i + 1, chunks)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE clicks.clicks"))
    engine.dispose()
    return open_id


def click_batch_seconds(dsn: str, user_base: int) -> float:
    """One batch of 500 new clicks resolved and rolled back (the table stays as it was)."""
    conn = psycopg2.connect(dsn)
    try:
        requests = [ingest.ClickRequest(str(uuid.uuid4()), READERS + user_base + i, 1 + i % THINGS) for i in range(500)]
        with conn.cursor() as cur:
            started = time.perf_counter()
            ingest.resolve(cur, requests)
            elapsed = time.perf_counter() - started
        conn.rollback()
        return elapsed
    finally:
        conn.close()


def main() -> None:
    say(f"partitions benchmark: {CLICKS:,} clicks, half of them in a sealed period")
    with private_environment("partitions") as (url, _amqp_uri):
        dsn = url.replace("postgresql+psycopg2://", "postgresql://")
        downgrade("clicks", url, "0004")
        open_id = seed_old_schema(url)
        started = time.perf_counter()
        upgrade("clicks", url)
        upgrade_seconds = time.perf_counter() - started
        say(f"upgrade (migration 0005): {CLICKS:,} clicks moved in {upgrade_seconds:.1f} s = {CLICKS / upgrade_seconds:,.0f} clicks/s")

        with create_engine(url).connect() as conn:
            on_disk = conn.execute(
                text("SELECT pg_total_relation_size(:t)"), {"t": f"clicks.{partitions.partition_name(SEALED)}"}
            ).scalar()
        say(f"a period's partition on disk (rows and its five indexes): {on_disk / (CLICKS / 2):.0f} bytes a click = {on_disk / (CLICKS / 2):.0f} MB per million clicks")

        quiet = [click_batch_seconds(dsn, n * 500) for n in range(20)]
        folder = Path(tempfile.mkdtemp(prefix="bench-partitions-"))
        engine = create_engine(url)
        during: list[float] = []
        done = threading.Event()

        def clicks_meanwhile():
            n = 100
            while not done.is_set():
                during.append(click_batch_seconds(dsn, n * 500))
                n += 1

        clicker = threading.Thread(target=clicks_meanwhile)
        clicker.start()
        started = time.perf_counter()
        target, rows = partitions.archive(engine, SEALED, folder)
        archive_seconds = time.perf_counter() - started
        done.set()
        clicker.join()
        size = target.stat().st_size
        say(
            f"archive of {SEALED}: {rows:,} clicks in {archive_seconds:.1f} s = {rows / archive_seconds:,.0f} clicks/s; "
            f"{size / 1e6:.1f} MB gzipped = {size / rows * 1e6 / 1e6:.0f} MB per million clicks"
        )
        say(
            f"click batch of 500 in the open period {open_id}: median {statistics.median(quiet) * 1000:.0f} ms alone, "
            f"{statistics.median(during) * 1000:.0f} ms (max {max(during) * 1000:.0f} ms, {len(during)} batches) while the archive ran"
        )

        with gzip.open(target, "rt") as f:
            archived = sum(1 for _ in f) - 1
        with engine.connect() as conn:
            left = conn.execute(text("SELECT count(*) FROM clicks.clicks")).scalar()
            gone = conn.execute(text(f"SELECT to_regclass('clicks.{partitions.partition_name(SEALED)}')")).scalar() is None
        engine.dispose()
        exact = archived == rows and archived + left == CLICKS and gone
        say(f"counted: {archived:,} in the file + {left:,} in the table = {archived + left:,} of {CLICKS:,}; partition dropped: {gone}")
        if not exact:
            raise SystemExit("clicks were lost or doubled")


if __name__ == "__main__":
    main()
