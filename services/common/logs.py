"""Logging for every process of the platform: ``configure(process_name)`` once, at start.

- Lines are text (``LOG_FORMAT=text``, the default) or JSON objects, one a line
  (``LOG_FORMAT=json``), at ``LOG_LEVEL``, on standard error.
- A line written while a request is being handled carries its request id: in a service, the
  id the caller put in the nameko context data (``request_id``), kept by ``RequestIdContext``
  for the worker's green thread; in the gateway, ``flask.g.request_id`` (a source the gateway
  registers with ``add_request_id_source``).
- An expected error (a ``DomainError`` such as a wrong password or a taken name, declared in
  ``expected_exceptions``) is part of the contract, not a fault: nameko logs it at WARNING with a
  traceback; here it becomes one INFO line (WARNING for the 5xx ones: a database or payment
  provider not answering). Unexpected errors keep their one traceback.

Text::

    2026-12-01 21:07:20,055 accounts INFO accounts.login answered Unauthorized: wrong password request_id=4f1c...

JSON::

    {"time": "2026-12-01T21:07:20.055+00:00", "process": "accounts", "level": "INFO",
     "logger": "nameko.containers", "message": "...", "request_id": "4f1c...", "pid": 1234}
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Callable

import eventlet.corolocal
from nameko.extensions import DependencyProvider

from services.common import settings
from services.common.errors import DomainError

FORMATS = ("text", "json")

_request_id_sources: list[Callable[[], str | None]] = []


def add_request_id_source(source: Callable[[], str | None]) -> None:
    """Register a function giving the request id of the code running now (or None)."""
    if source not in _request_id_sources:
        _request_id_sources.append(source)


def current_request_id() -> str | None:
    for source in _request_id_sources:
        request_id = source()
        if request_id:
            return request_id
    return None


class _RequestIdFilter(logging.Filter):
    """Stamps each record with the request id being handled (an explicit ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True


class _ExpectedErrorsBrief(logging.Filter):
    """On ``nameko.containers``: an expected exception becomes one INFO line without traceback.

    nameko writes ``'(expected) error handling worker %s: %s', worker_ctx, exc`` with
    ``exc_info``; the record is rewritten to name the call and the error instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, DomainError) and str(record.msg).startswith("(expected)"):
            worker_ctx = record.args[0] if isinstance(record.args, tuple) and record.args else None
            entrypoint = getattr(worker_ctx, "entrypoint", None)
            call = f"{getattr(worker_ctx, 'service_name', '?')}.{getattr(entrypoint, 'method_name', '?')}"
            # a user's mistake is INFO; a dependency away (Unavailable, a provider's error) is
            # worth an operator's look, but its traceback would only show our own RPC plumbing
            level = logging.WARNING if exc.status >= 500 else logging.INFO
            record.levelno, record.levelname = level, logging.getLevelName(level)
            record.msg, record.args = "%s answered %s: %s", (call, type(exc).__name__, exc.description or exc.code)
            record.exc_info = record.exc_text = None
        return True


class _BrokerPasswordsMasked(logging.Filter):
    """On ``nameko.messaging``: nameko masks the password of the first URL of ``AMQP_URI`` when
    it logs a lost connection, and shows the others' (a cluster's failover list) in clear."""

    PASSWORD = re.compile(r"(amqps?://[^:@/\s;]*:)[^@\s;]*@")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "amqp" in message:
            record.msg, record.args = self.PASSWORD.sub(r"\1********@", message), None
        return True


class TextFormatter(logging.Formatter):
    def __init__(self, process_name: str):
        super().__init__(f"%(asctime)s {process_name} %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        if not request_id:
            return line
        # after the message's first line, so a traceback below it stays as it is
        first, sep, rest = line.partition("\n")
        return f"{first} request_id={request_id}{sep}{rest}"


class JsonFormatter(logging.Formatter):
    def __init__(self, process_name: str):
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "process": self.process_name,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        # structured fields a caller passes as ``extra={"fields": {...}}`` (the access log)
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["traceback"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        entry["pid"] = record.process
        return json.dumps(entry, default=str)


def log_format(environ: dict | None = None) -> str:
    value = (settings.get("LOG_FORMAT", environ) or "text").strip().lower()
    if value not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {value!r}")
    return value


class BufferedStreamHandler(logging.StreamHandler):
    """Writes lines into a buffer that goes out every ``FLUSH_SECONDS``, at once for a WARNING or
    worse, and at exit. A gateway under load writes an access line per request: flushing each one
    was a system call per request and an eighth of the gateway's CPU."""

    FLUSH_SECONDS = 0.2

    def __init__(self, stream):
        try:
            stream = io.open(os.dup(stream.fileno()), "w", buffering=256 * 1024, encoding="utf-8", errors="replace")
        except (AttributeError, OSError, io.UnsupportedOperation):
            pass  # a stream without a file descriptor (a test's StringIO): written as it is
        super().__init__(stream)
        self._flusher_pid = None
        # a child forked with lines in the buffer would write them a second time
        os.register_at_fork(before=lambda: logging.StreamHandler.flush(self))

    def _ensure_flusher(self) -> None:
        # started by the first line a process writes: a forked child (the gateway's) has none
        if self._flusher_pid != os.getpid():
            self._flusher_pid = os.getpid()
            threading.Thread(target=self._flush_now_and_then, name="log-flusher", daemon=True).start()

    def _flush_now_and_then(self) -> None:
        while True:
            time.sleep(self.FLUSH_SECONDS)
            try:
                super().flush()
            except (OSError, ValueError):  # the stream is closed: the process is ending
                return

    def flush(self) -> None:
        """Only lines that an operator must see at once go out at once (see ``emit``)."""

    def emit(self, record: logging.LogRecord) -> None:
        self._ensure_flusher()
        super().emit(record)
        if record.levelno >= logging.WARNING:
            super().flush()

    def close(self) -> None:
        try:
            super().flush()
        finally:
            super().close()


def configure(process_name: str, stream=None) -> None:
    """Set up the root logger of this process (replacing any earlier set-up), writing to
    ``stream`` (default: standard error)."""
    formatter = JsonFormatter(process_name) if log_format() == "json" else TextFormatter(process_name)
    handler = BufferedStreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.get("LOG_LEVEL"))
    containers = logging.getLogger("nameko.containers")
    if not any(isinstance(f, _ExpectedErrorsBrief) for f in containers.filters):
        containers.addFilter(_ExpectedErrorsBrief())
    messaging = logging.getLogger("nameko.messaging")
    if not any(isinstance(f, _BrokerPasswordsMasked) for f in messaging.filters):
        messaging.addFilter(_BrokerPasswordsMasked())
    logging.captureWarnings(True)  # a library's warning is a log line like any other, JSON included
    # no line shows the caller's file and line or the thread's name, and looking them up (a walk
    # up the stack for every line) was most of the cost of an access-log line
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False


# -- the request id of a nameko worker -----------------------------------------------------------

_worker = eventlet.corolocal.local()


def _worker_request_id() -> str | None:
    return getattr(_worker, "request_id", None)


class RequestIdContext(DependencyProvider):
    """Keeps the caller's request id (nameko context data ``request_id``) for the worker's green
    thread while it runs, so every line it logs carries it. ``attach`` adds it to a service class."""

    def setup(self):
        add_request_id_source(_worker_request_id)

    def worker_setup(self, worker_ctx):
        # nameko runs worker_setup, the method and worker_teardown in the worker's own green thread
        _worker.request_id = worker_ctx.data.get("request_id")

    def worker_teardown(self, worker_ctx):
        _worker.request_id = None


def attach(service_cls) -> None:
    """Give ``service_cls`` a ``RequestIdContext`` unless it declares one itself."""
    if not any(isinstance(v, RequestIdContext) for v in vars(service_cls).values()):
        service_cls.request_id_context = RequestIdContext()
