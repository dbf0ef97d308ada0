"""Database plumbing: engines and a nameko dependency giving one SQLAlchemy session per worker.

A service method commits its own work (``self.db.commit()``) before it returns: nameko sends the
RPC reply before dependencies see the result, so a commit there would answer before the data is
durable and could not report a failed commit. Whatever a worker left uncommitted (because it
raised) is rolled back, so an error never leaves a partial write. Events written to the outbox
in the same session commit or vanish with the rest.
"""
from __future__ import annotations

import logging
import threading

from nameko.extensions import DependencyProvider
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from services.common import settings

log = logging.getLogger(__name__)

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _pool_limit() -> int:
    """Connections a process may open: one per RPC worker, per event worker and per ownership-check
    worker (their pools are separate, see ``services.common.runner``), and a few for the outbox
    relays and one-off work, so no worker ever waits for a connection another kind of work holds."""
    return settings.get_int("RPC_WORKERS") + settings.get_int("EVENT_WORKERS") + settings.get_int("CLAIM_WORKERS") + 4


def engine_for(url: str, **kwargs) -> Engine:
    """One engine (one connection pool) per URL and process."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            limit = _pool_limit()
            engine = create_engine(url, pool_pre_ping=True, pool_size=min(10, limit), max_overflow=max(0, limit - 10), **kwargs)
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


class _OnCommitSession(Session):
    """A session that runs callbacks after a successful commit (used to wake the outbox relay)."""

    def after_commit(self, callback) -> None:
        self.info.setdefault("after_commit", []).append(callback)


@event.listens_for(_OnCommitSession, "after_commit")
def _run_after_commit(session):
    callbacks = session.info.pop("after_commit", [])
    for callback in callbacks:
        try:
            callback()
        except Exception:  # a wake-up is an optimisation; the relay also polls
            log.exception("after-commit callback failed")


class Database(DependencyProvider):
    """``db = Database("ACCOUNTS_DATABASE_URL")``: ``self.db`` is the worker's session."""

    def __init__(self, url_key: str):
        self.url_key = url_key
        self.sessionmaker = None
        self.sessions: dict = {}

    def setup(self):
        url = self.container.config[self.url_key]
        self.sessionmaker = sessionmaker(bind=engine_for(url), class_=_OnCommitSession, expire_on_commit=False)

    def get_dependency(self, worker_ctx):
        session = self.sessionmaker()
        self.sessions[worker_ctx] = session
        return session

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        session = self.sessions.get(worker_ctx)
        if session is None:
            return
        session.rollback()

    def worker_teardown(self, worker_ctx):
        session = self.sessions.pop(worker_ctx, None)
        if session is not None:
            session.close()


def copy(session, sql: str, stream) -> None:
    """``COPY ... FROM STDIN`` / ``TO STDOUT`` on the session's connection.

    psycopg2 refuses COPY while a wait callback (psycogreen, for eventlet) is installed. COPY runs
    without yielding to other green threads either way, so the callback is lifted for the call and
    put back; the process's other green threads simply wait for it, as for any blocking call."""
    import psycopg2.extensions

    cursor = session.connection().connection.dbapi_connection.cursor()
    callback = psycopg2.extensions.get_wait_callback()
    psycopg2.extensions.set_wait_callback(None)
    try:
        cursor.copy_expert(sql, stream)
    finally:
        psycopg2.extensions.set_wait_callback(callback)
