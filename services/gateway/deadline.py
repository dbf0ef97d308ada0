"""Every gateway request ends within its deadline: its answer, or 503 with ``Retry-After``.

A request's deadline (``REQUEST_DEADLINE`` seconds after it arrived) is set before any view runs
and bounds every wait below it: an RPC or a click gets only the time that is left, and carries
the deadline along so the service drops the work if it picks it up too late. ``DeadlineGuard``
is the backstop for what no single wait bounds (a broker that stops reading mid-publish, a
replacement connection that hangs): it interrupts the request's green thread shortly after the
deadline and answers 503 itself.
"""
from __future__ import annotations

import json
import logging
import time

import eventlet
from flask import g, has_request_context

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"
# waits inside a request end this long before its deadline, so that their 503 (clearer than the
# guard's, and logged with the service that did not answer) is written and sent in time; the
# guard itself fires at the deadline
ANSWER_MARGIN_SECONDS = 0.3


def start(seconds: float) -> None:
    g.deadline = time.time() + seconds


def current(default_seconds: float) -> float:
    """The deadline of the request being served (Unix time), or ``default_seconds`` from now."""
    if has_request_context() and "deadline" in g:
        return g.deadline
    return time.time() + default_seconds


def remaining(default_seconds: float) -> float:
    """How long a wait inside the current request may last: up to the margin before its deadline."""
    return current(default_seconds) - ANSWER_MARGIN_SECONDS - time.time()


def request_id() -> str | None:
    return g.get("request_id") if has_request_context() else None


class DeadlineGuard:
    """WSGI middleware: a request still running past its deadline is cut off with a 503."""

    def __init__(self, app, seconds: float):
        self.app = app
        self.seconds = seconds

    def __call__(self, environ, start_response):
        started = []

        def tracking_start_response(status, headers, exc_info=None):
            started.append(status)
            return start_response(status, headers, exc_info)

        timer = eventlet.Timeout(self.seconds)
        try:
            return self.app(environ, tracking_start_response)
        except eventlet.Timeout as exc:
            if exc is not timer:
                raise
            log.warning("%s %s cut off at its deadline (%.0f s)", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), self.seconds)
            if started:  # too late for another status line: end the response here
                return [b""]
            body = json.dumps(
                {"error": "service_unavailable", "error_description": "the platform could not answer in time; try again shortly"}
            ).encode()
            start_response(
                "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Retry-After", RETRY_AFTER_SECONDS)],
            )
            return [body]
        finally:
            timer.cancel()
