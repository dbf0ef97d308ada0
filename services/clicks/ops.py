"""Operator commands of the clicks service.

    python -m services.clicks.ops partitions                       # each period's partition: rows, state
    python -m services.clicks.ops archive [--keep N] [--to DIR] [--dry-run]

``archive`` writes the clicks of every *settled* period older than the newest N sealed ones
(``CLICK_RETENTION_PERIODS``) to ``DIR/clicks-<period>.csv.gz`` (with a ``.sha256`` beside it),
then drops the period's partition: detached without blocking the click path, dropped in no
time, never deleted row by row. Whether a period is settled is asked of the settlement service
over RabbitMQ (``AMQP_URI``); a period it has not settled stays. Safe to run again after a crash
or a kill: each period carries on from the step it reached. Exit status 0 when every due period
was archived, 1 when one failed (the others are done), 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.clicks import partitions
from services.common import settings
from services.common.db import engine_for


def list_partitions(url: str) -> int:
    engine = engine_for(url)
    with engine.connect() as conn:
        periods = conn.execute(text("SELECT id, state, archived_at, archived_clicks FROM clicks.periods ORDER BY seq")).all()
        for p in periods:
            name = partitions.partition_name(p.id)
            if p.archived_at is not None:
                where = f"archived {p.archived_at:%Y-%m-%d %H:%M} UTC, {p.archived_clicks:,} clicks"
            elif conn.execute(text("SELECT to_regclass(:t)"), {"t": f"clicks.{name}"}).scalar() is None:
                where = "no partition"
            else:
                where = f"{name}, {conn.execute(text(f'SELECT count(*) FROM clicks.{name}')).scalar():,} clicks"
            print(f"{p.id:<12} {p.state:<7} {where}")
    return 0


def archive(url: str, amqp_uri: str, keep: int, folder: Path, dry_run: bool) -> int:
    from nameko.standalone.rpc import ClusterRpcProxy

    engine = engine_for(url)
    with Session(engine) as session:
        due = partitions.due_for_archive(session, keep)
    if not due:
        print(f"nothing to archive: no sealed period older than the newest {keep}", file=sys.stderr)
        return 0
    with ClusterRpcProxy({"AMQP_URI": amqp_uri, "serializer": "json"}, timeout=30) as cluster:
        states = cluster.settlement.settlement_states([p.period for p in due])
    failed = 0
    done = []
    for n, candidate in enumerate(due, 1):
        state = states.get(candidate.period)
        head = f"[{n}/{len(due)}] {candidate.period}"
        if state != "settled":
            print(f"{head}: kept, its settlement is {state or 'not begun'}", file=sys.stderr)
            continue
        if dry_run:
            print(f"{head}: would be archived to {partitions.archive_file(folder, candidate.period)}", file=sys.stderr)
            continue
        started = time.monotonic()
        try:
            target, rows = partitions.archive(engine, candidate.period, folder)
        except Exception as exc:  # one period's failure is reported; the others still go
            failed += 1
            print(f"{head}: FAILED: {exc}", file=sys.stderr)
            continue
        print(f"{head}: {rows:,} clicks written to {target} and the partition dropped ({time.monotonic() - started:.1f} s)", file=sys.stderr)
        done.append({"period": candidate.period, "clicks": rows, "file": str(target)})
    print(json.dumps({"archived": done}, indent=2))
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.clicks.ops", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("partitions", help="each period's partition and its size")
    run = commands.add_parser("archive", help="archive and drop the clicks of settled periods past the retention")
    run.add_argument("--keep", type=int, default=None, help="sealed periods whose clicks stay (default: CLICK_RETENTION_PERIODS)")
    run.add_argument("--to", type=Path, default=None, help="folder of the archive files (default: CLICK_ARCHIVE_DIR)")
    run.add_argument("--dry-run", action="store_true", help="say what would be archived, change nothing")
    args = parser.parse_args(argv)
    url = settings.get("CLICKS_DATABASE_URL")
    if args.command == "partitions":
        return list_partitions(url)
    keep = args.keep if args.keep is not None else settings.get_int("CLICK_RETENTION_PERIODS")
    if keep < 1:
        parser.error("--keep is at least 1: the newest sealed period's clicks always stay")
    folder = args.to or Path(settings.get("CLICK_ARCHIVE_DIR"))
    return archive(url, settings.get("AMQP_URI"), keep, folder, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
