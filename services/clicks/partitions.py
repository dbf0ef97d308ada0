"""The clicks table, one partition per period (PostgreSQL declarative partitioning, LIST on
``period_id``), and the retention of settled periods.

A period's clicks live together, so sealing, the settlement export and a reader's clicks of the
open period read one partition, and a settled period leaves the table by ``DETACH PARTITION``
and ``DROP TABLE`` (instant, however many rows) after its rows were written to an archive file,
never by a long ``DELETE``.

Locks, because the click path must not stop for either:

- a new period's partition is made ``LIKE`` the table and then ``ATTACH``-ed, which takes only
  ``SHARE UPDATE EXCLUSIVE`` on the table: click batches (``ROW EXCLUSIVE``) and readers go on.
  (``CREATE TABLE ... PARTITION OF`` would take ``ACCESS EXCLUSIVE``: the seal would wait for
  every reader of the table, a settlement's export of a month, and hold up all behind it.)
- a settled partition leaves by ``DETACH PARTITION ... CONCURRENTLY``, the same weak lock.
- both take the advisory lock ``PARTITION_LOCK`` first, so a seal never meets a detach half way.

An archive run is safe to repeat after a crash: every step is recognised from the catalog (still
attached, detach pending, detached, gone) and carried on from there.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from services.common.db import copy
from services.common.periods import is_period_id

PARTITION_LOCK = "hashtext('clicks:partitions')"
COLUMNS = "id, period_id, user_id, thing_id, request_id, source, created_at"


def partition_name(period: str) -> str:
    """``clicks_2026_11_2`` for period ``2026-11.2``: one table name per period id."""
    if not is_period_id(period):
        raise ValueError(f"not a period id: {period!r}")
    return "clicks_" + re.sub(r"[^0-9]", "_", period)


def ensure_partition(session: Session, period: str) -> None:
    """Make and attach ``period``'s partition if it has none; inside the caller's transaction."""
    name = partition_name(period)
    attached = session.execute(
        text(
            "SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'clicks.clicks'::regclass AND c.relname = :n"
        ),
        {"n": name},
    ).scalar()
    if attached:
        return
    session.execute(text(f"CREATE TABLE IF NOT EXISTS clicks.{name} (LIKE clicks.clicks INCLUDING DEFAULTS)"))
    # an empty table is checked against the partition bound in no time
    session.execute(text(f"ALTER TABLE clicks.clicks ATTACH PARTITION clicks.{name} FOR VALUES IN ('{period}')"))


def lock_partitions(session: Session) -> None:
    session.execute(text(f"SELECT pg_advisory_xact_lock({PARTITION_LOCK})"))


@dataclass(frozen=True)
class PeriodToArchive:
    period: str
    sealed_at: object


def due_for_archive(session: Session, keep: int) -> list[PeriodToArchive]:
    """Sealed periods not yet archived, past the newest ``keep`` sealed periods, oldest first.
    Whether each is settled is the settlement service's to say (the caller asks)."""
    rows = session.execute(
        text(
            "SELECT id, sealed_at FROM ("
            "  SELECT id, sealed_at, archived_at, row_number() OVER (ORDER BY seq DESC) AS newness "
            "  FROM clicks.periods WHERE state = 'sealed'"
            ") p WHERE newness > :keep AND archived_at IS NULL ORDER BY sealed_at"
        ),
        {"keep": keep},
    ).all()
    return [PeriodToArchive(r.id, r.sealed_at) for r in rows]


def _partition_state(conn: Connection, name: str) -> str:
    """``attached``, ``detach-pending`` (a concurrent detach was interrupted), ``detached`` or ``gone``."""
    row = conn.execute(
        text(
            "SELECT i.inhdetachpending FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'clicks' "
            "LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = 'clicks.clicks'::regclass WHERE c.relname = :n"
        ),
        {"n": name},
    ).first()
    if row is None:
        return "gone"
    if row[0] is None:
        return "detached"
    return "detach-pending" if row[0] else "attached"


def detach(engine: Engine, period: str) -> None:
    """Take ``period``'s partition out of the clicks table without blocking the click path.
    ``DETACH ... CONCURRENTLY`` cannot run in a transaction block: autocommit, under the
    advisory lock the seal also takes."""
    name = partition_name(period)
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text(f"SELECT pg_advisory_lock({PARTITION_LOCK})"))
        try:
            state = _partition_state(conn, name)
            if state == "attached":
                conn.execute(text(f"ALTER TABLE clicks.clicks DETACH PARTITION clicks.{name} CONCURRENTLY"))
            elif state == "detach-pending":
                conn.execute(text(f"ALTER TABLE clicks.clicks DETACH PARTITION clicks.{name} FINALIZE"))
        finally:
            conn.execute(text(f"SELECT pg_advisory_unlock({PARTITION_LOCK})"))


def archive_file(folder: Path, period: str) -> Path:
    return folder / f"clicks-{period}.csv.gz"


def dump(engine: Engine, period: str, folder: Path) -> tuple[Path, int, str]:
    """Write the detached partition's rows to ``clicks-<period>.csv.gz`` (CSV with a header), made
    whole before it is given its name. Returns the file, its row count and its SHA-256."""
    name = partition_name(period)
    folder.mkdir(parents=True, exist_ok=True)
    target = archive_file(folder, period)
    partial = target.with_name(target.name + ".partial")
    with Session(engine) as session, gzip.open(partial, "wb") as out:
        copy(session, f"COPY (SELECT {COLUMNS} FROM clicks.{name} ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER true)", out)
        session.rollback()
    with open(partial, "rb") as written:
        os.fsync(written.fileno())
    rows = 0
    with gzip.open(partial, "rt", newline="") as check:
        for _ in check:
            rows += 1
    rows -= 1  # the header
    digest = hashlib.sha256(partial.read_bytes()).hexdigest()
    os.replace(partial, target)
    target.with_name(target.name + ".sha256").write_text(f"{digest}  {target.name}\n")
    return target, rows, digest


def drop(engine: Engine, period: str, rows: int) -> None:
    """Record the period as archived and drop its detached partition, in one transaction: after a
    crash either both happened or neither did. Refuses if the table no longer holds ``rows`` rows."""
    name = partition_name(period)
    with engine.begin() as conn:
        held = conn.execute(text(f"SELECT count(*) FROM clicks.{name}")).scalar()
        if held != rows:
            raise RuntimeError(f"{name} holds {held} rows but {rows} were archived; nothing dropped")
        conn.execute(
            text("UPDATE clicks.periods SET archived_at = now(), archived_clicks = :n WHERE id = :p"), {"n": rows, "p": period}
        )
        conn.execute(text(f"DROP TABLE clicks.{name}"))


def archive(engine: Engine, period: str, folder: Path) -> tuple[Path, int]:
    """Detach, dump and drop one settled period's partition; safe to run again after a crash."""
    name = partition_name(period)
    with engine.connect() as conn:
        state = _partition_state(conn, name)
    if state == "gone":
        raise RuntimeError(f"{name} does not exist and {period} is not recorded as archived")
    detach(engine, period)
    target, rows, _ = dump(engine, period, folder)
    drop(engine, period, rows)
    return target, rows
