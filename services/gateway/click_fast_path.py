"""The click path's own way through the gateway: ``POST /rest/v2/things/:id/flattr`` by a caller
whose token the gateway has checked already, answered without Flask's request machinery.

Most of the platform's requests under load are flattrs, and most of a flattr's time in the
gateway was Flask's (request context, routing, hooks, the response object), not the click's.
Everything this path decides is decided by the same code as the view's: the token cache and its
scopes (``auth``), the rate limit (the same limiter, key and bucket as Flask-Limiter's for the
view), the click (``ClickClient``) and Flattr's answer (``views.flattr.flattr_outcome``). Anything
else (no token, one not checked yet, a missing scope, a rate limit reached or a rate-limit store
that does not answer, a service that does not answer before) goes on to Flask, which answers it as it answers every request. A click
that was sent is answered here, whatever the answer: a 503 included, never sent twice.
"""
from __future__ import annotations

import json
import logging
import re
import time
from http import HTTPStatus

from services.gateway import metrics
from services.gateway.auth import token_key
from services.gateway.deadline import RETRY_AFTER_SECONDS
from services.gateway.errors import ApiError
from services.gateway.rate_limits import rate_limit_args
from services.gateway.request_log import ENVIRON_ID, ENVIRON_ROUTE
from services.gateway.rpc import ServiceUnavailable

RULE = "/rest/v2/things/<int:thing_id>/flattr"
ENDPOINT = "flattr.flattr_thing"  # Flask's name for the view: Flask-Limiter's bucket for its limits
_PATH = re.compile(r"/rest/v2/things/([0-9]{1,18})/flattr")

log = logging.getLogger("services.gateway.errors")  # the view's 503s are logged there too


class ClickFastPath:
    def __init__(self, wsgi_app, app):
        from services.gateway.views.flattr import flattr_outcome

        self.wsgi_app = wsgi_app
        self.outcome = flattr_outcome
        self.cache = app.extensions["token_cache"]
        self.clicks = app.extensions["clicks"]
        self.limiter = app.extensions["rate_limiter"]
        self.limit_for = app.extensions["rate_limit_for_token"]
        self.base_url = app.config["PUBLIC_URL"]
        self._latency = metrics.REQUEST_LATENCY.labels("POST", RULE)

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST":
            match = _PATH.fullmatch(environ.get("PATH_INFO", ""))
            if match:
                answered = self._flattr(environ, start_response, int(match.group(1)))
                if answered is not None:
                    return answered
        return self.wsgi_app(environ, start_response)

    def _flattr(self, environ, start_response, thing_id: int):
        started = time.perf_counter()
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        key = token_key(token)
        caller = self.cache.get(key)
        if caller is None or "flattr" not in caller.scopes:
            return None
        headers = [("Content-Type", "application/json")]
        if self.limiter.enabled:
            limit = self.limit_for()
            bucket = rate_limit_args(key, ENDPOINT)
            try:
                if not self.limiter.limiter.hit(limit, *bucket):
                    return None  # Flask answers the breach, with its headers
                reset, remaining = self.limiter.limiter.get_window_stats(limit, *bucket)
            except Exception:  # the store's client raises its own errors: Flask's limiter logs them and goes on
                return None
            headers += [("X-RateLimit-Limit", str(limit.amount)), ("X-RateLimit-Remaining", str(remaining)), ("X-RateLimit-Reset", str(int(reset)))]
        environ[ENVIRON_ROUTE] = RULE
        try:
            answer = self.clicks.flattr(caller.user_id, thing_id, request_id=environ.get(ENVIRON_ID))
            outcome = self.outcome(answer, self.base_url)
        except ServiceUnavailable as exc:
            log.warning("service unavailable: %s", exc)
            outcome = ApiError(503, "service_unavailable", "a service is not answering; try again shortly")
            headers.append(("Retry-After", RETRY_AFTER_SECONDS))
        if isinstance(outcome, ApiError):
            status, body = outcome.status, {"error": outcome.code, "error_description": outcome.description}
            metrics.ERRORS.labels(outcome.code).inc()
        else:
            status, body = 200, outcome
        payload = json.dumps(body).encode()
        start_response(f"{status} {HTTPStatus(status).phrase}", headers + [("Content-Length", str(len(payload)))])
        metrics.REQUESTS.labels("POST", RULE, str(status)).inc()
        self._latency.observe(time.perf_counter() - started)
        return [payload]

