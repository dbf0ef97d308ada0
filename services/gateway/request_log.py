"""Request ids and the access log: one line per request, and an id that follows the request.

The id is the caller's ``X-Request-Id`` when it is a sane short token (a proxy or a client
that tracks its own requests), else a new one. It is answered in ``X-Request-Id``, kept in
``flask.g.request_id`` (the RPC and click clients send it on to the services, whose log lines
carry it too) and written on every log line of the request. The access line is written when
the answer is complete, by a WSGI middleware outside everything else, so a request the
deadline guard cut off or that failed before any view is logged like any other::

    ... gateway INFO gateway.access: GET /rest/v2/things/<int:id> 200 3.1ms request_id=9f2c...

In JSON lines the same line has the fields ``method``, ``route``, ``status`` and
``duration_ms``. The route is the URL rule, not the path: it has no ids or tokens in it.
"""
from __future__ import annotations

import logging
import re
import time

from flask import Flask, g, has_request_context, request

from services.common import logs
from services.common.events import new_id

access_log = logging.getLogger("gateway.access")

HEADER = "X-Request-Id"
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
ENVIRON_ID = "flattr.request_id"
ENVIRON_ROUTE = "flattr.route"


def request_id_from(header: str | None) -> str:
    """The caller's id if it is 1 to 64 letters, digits or ``._:-``; otherwise a new one (a log
    line must not carry whatever a client sends, nor be split by a newline in it)."""
    if header and _SANE.fullmatch(header):
        return header
    return new_id().replace("-", "")


class AccessLog:
    """WSGI middleware: gives each request its id, answers it in the header, logs the line."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        request_id = environ[ENVIRON_ID] = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        started = time.perf_counter()
        status = []

        def start_with_id(status_line, headers, exc_info=None):
            status[:] = [status_line]
            headers = [(k, v) for k, v in headers if k.lower() != HEADER.lower()] + [(HEADER, request_id)]
            return start_response(status_line, headers, exc_info)

        try:
            return self.app(environ, start_with_id)
        finally:
            code = int(status[0].split(" ", 1)[0]) if status else 500
            method, route = environ.get("REQUEST_METHOD", "-"), environ.get(ENVIRON_ROUTE, "(unmatched)")
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            access_log.info(
                "%s %s %s %.1fms", method, route, code, duration_ms,
                extra={"request_id": request_id, "fields": {"method": method, "route": route, "status": code, "duration_ms": duration_ms}},
            )


def _request_id() -> str | None:
    return g.get("request_id") if has_request_context() else None


def _remember():
    g.request_id = request.environ.get(ENVIRON_ID) or request_id_from(request.headers.get(HEADER))
    if request.url_rule is not None:
        request.environ[ENVIRON_ROUTE] = request.url_rule.rule


def init(app: Flask) -> None:
    """Call last in ``create_app``: the middleware must wrap every other one."""
    # first of the before-request functions, so everything after it (rate limits, token checks,
    # the views) logs with the id and passes it on
    app.before_request_funcs.setdefault(None, []).insert(0, _remember)
    app.wsgi_app = AccessLog(app.wsgi_app)
    logs.add_request_id_source(_request_id)
