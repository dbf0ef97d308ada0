"""Errors in Flattr's format: an HTTP status and ``{"error": code, "error_description": text}``.

A browser asking for a web page (``Accept`` prefers ``text/html``, outside the API, the operator's
and the machine endpoints) gets the same status and words as an HTML page instead; clients get
the JSON."""
from __future__ import annotations

import logging
import math
import time

from flask import current_app, jsonify, make_response, render_template, request
from flask_limiter.errors import RateLimitExceeded
from nameko.exceptions import RemoteError
from werkzeug.exceptions import HTTPException

from services.common.errors import Conflict, DomainError
from services.gateway import metrics
from services.gateway.rpc import ServiceUnavailable

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, description: str = "", headers: dict | None = None, extra: dict | None = None):
        super().__init__(description)
        self.status, self.code, self.description = status, code, description
        self.headers = headers or {}
        self.extra = extra or {}


# answered in JSON whatever the Accept header says
MACHINE_PATHS = ("/rest/v2", "/admin", "/oauth/token", "/openapi.json", "/healthz", "/readyz", "/metrics", "/js/", "/button/")

HEADINGS = {
    400: "That did not work",
    401: "Please sign in",
    402: "Payment declined",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed here",
    409: "Already there",
    413: "Too large",
    429: "Slow down",
    500: "Something went wrong on our side",
    502: "The payment provider failed",
    503: "Try again in a moment",
}


def wants_html() -> bool:
    if request.path.startswith(MACHINE_PATHS):
        return False
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def error_response(status: int, code: str, description: str, headers: dict | None = None, extra: dict | None = None):
    metrics.ERRORS.labels(code).inc()
    if wants_html():
        heading = HEADINGS.get(status, "That did not work" if status < 500 else "Something went wrong")
        response = make_response(render_template("error.html", status=status, code=code, heading=heading, description=description))
    else:
        body = {"error": code, "error_description": description}
        body.update(extra or {})
        response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


# answered in JSON (Flattr's error format); every other path is a page for people
JSON_PATHS = ("/rest/v2", "/admin", "/oauth/token")

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "invalid_request",
    415: "invalid_request",
}


def _seconds_until_reset() -> str:
    """For the answer to a breached limit: when its window resets."""
    breached = current_app.extensions["rate_limiter"].current_limit
    if breached is None:
        return "60"
    return str(max(1, math.ceil(breached.reset_at - time.time())))


def register(app) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.description, exc.headers, exc.extra)

    @app.errorhandler(DomainError)
    def _domain_error(exc: DomainError):
        if isinstance(exc, Conflict):
            return error_response(409, "conflict", exc.description)
        headers = {"Retry-After": "5"} if exc.status == 503 else None
        return error_response(exc.status, exc.code, exc.description, headers)

    @app.errorhandler(ServiceUnavailable)
    def _unavailable(exc):
        log.warning("service unavailable: %s", exc)
        return error_response(503, "service_unavailable", "a service is not answering; try again shortly", {"Retry-After": "5"})

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(exc):
        retry_after = _seconds_until_reset()
        if not request.path.startswith(JSON_PATHS):
            # a person at a form (sign-in, sign-up): a page, with HTTP's own status for it
            metrics.ERRORS.labels("rate_limit_exceeded").inc()
            page = render_template("base.html", error=f"Too many attempts from your address. Try again in {retry_after} seconds.")
            return page, 429, {"Retry-After": retry_after}
        response = error_response(403, "rate_limit_exceeded", f"rate limit exceeded: {exc.description}")
        response.headers["Retry-After"] = retry_after
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = _HTTP_CODES.get(exc.code, "invalid_request" if exc.code < 500 else "server_error")
        return error_response(exc.code, code, exc.description or exc.name)

    @app.errorhandler(RemoteError)
    def _remote_error(exc):
        log.error("remote error: %s", exc)
        return error_response(500, "server_error", "an internal error occurred")

    @app.errorhandler(Exception)
    def _unexpected(exc):
        log.exception("unhandled error")
        return error_response(500, "server_error", "an internal error occurred")
