"""Test databases: each test gets its own, cloned from a template migrated once per session.

Dropping a database makes PostgreSQL run an immediate checkpoint (it must forget the dropped
files' pending fsyncs), and the test that waits for it loses one to two seconds while other tests
keep the server busy. So a test only disconnects its database when it ends, and a ``psql`` process
of the session's drops them one after another in the background; the session waits for the last
ones at its end. Without ``psql`` on the machine the drop happens at once, as it used to.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.common.db import dispose_engines


def admin_engine(infra):
    return create_engine(infra.admin_db_url, isolation_level="AUTOCOMMIT")


class BackgroundDrops:
    """Drops databases in a ``psql`` process of its own, in the order they were handed over."""

    def __init__(self, admin_db_url: str):
        url = make_url(admin_db_url).set(drivername="postgresql")
        self.process = None
        if shutil.which("psql"):
            self.process = subprocess.Popen(
                ["psql", "--quiet", "--no-psqlrc", "--set", "ON_ERROR_STOP=0", url.render_as_string(hide_password=False)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
            )

    def drop(self, admin, name: str) -> None:
        statement = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);'
        if self.process is not None and self.process.poll() is None:
            with admin.connect() as conn:  # nothing of the test may write to it any more
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
            self.process.stdin.write(statement + "\n")
            self.process.stdin.flush()
        else:
            with admin.connect() as conn:
                conn.execute(text(statement))

    def finish(self) -> None:
        if self.process is not None:
            self.process.stdin.close()
            self.process.wait(timeout=600)


_drops: BackgroundDrops | None = None


def background_drops(infra) -> BackgroundDrops:
    global _drops
    if _drops is None:
        _drops = BackgroundDrops(infra.admin_db_url)
    return _drops


def finish_background_drops() -> None:
    global _drops
    if _drops is not None:
        _drops.finish()
        _drops = None


@contextlib.contextmanager
def cloned_database(infra, template_database):
    """A database of its own, cloned from the migrated template; dropped afterwards (in the background)."""
    name = f"flattr_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{uuid.uuid4().hex[:12]}"
    admin = admin_engine(infra)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'))
    try:
        yield make_url(infra.admin_db_url).set(database=name).render_as_string(hide_password=False)
    finally:
        dispose_engines()
        background_drops(infra).drop(admin, name)
        admin.dispose()


def migrate_test_database(engine, url: str, service: str, step, revision: str) -> None:
    """Move a test's database to ``revision`` of ``service``'s migrations, ``step`` being alembic's
    ``command.upgrade`` or ``command.downgrade``: a test of a migration starts from the one before."""
    from services.common.migrate import alembic_config

    with engine.connect() as conn:
        cfg = alembic_config(service, url)
        cfg.attributes["connection"] = conn
        step(cfg, revision)
        conn.commit()
