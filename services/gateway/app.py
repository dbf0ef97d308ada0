"""The gateway: a Flask app serving Flattr's REST API v2, OAuth2 and the platform's web pages."""
from __future__ import annotations

import logging
import time
from datetime import timedelta

from flask import Flask, g, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from services.common import settings
from services.gateway import config, deadline, errors, metrics, request_log, security_headers
from services.gateway.auth import TokenCache, TokenChecker
from services.gateway.click_fast_path import ClickFastPath
from services.gateway.oauth import init_oauth
from services.gateway.password_throttle import PasswordThrottle
from services.gateway.rate_limits import init_rate_limits, parse_rate_limits, shared_store
from services.gateway.revocations import RevocationListener
from services.gateway.rpc import RpcPool
from services.gateway.views.admin import admin
from services.gateway.clicks import ClickClient
from services.gateway.views.api import api
from services.gateway.views.button import button
from services.gateway.views.flattr import flattr
from services.gateway.views.money import money
from services.gateway.views.ownership import ownership
from services.gateway.views.platform import platform
from services.gateway.views.web import web
from services.gateway.views import pages

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


class WebOnlySessions(SecureCookieSessionInterface):
    """Sessions (the signed cookie) belong to the web pages; the API authenticates by token and
    never reads or writes the cookie, so it does not pay for decoding one."""

    def open_session(self, app, request):
        if request.path.startswith(("/rest/v2/", "/admin/")):
            return self.make_null_session(app)
        return super().open_session(app, request)


def create_app(overrides: dict | None = None, rpc: RpcPool | None = None, clicks: ClickClient | None = None) -> Flask:
    app = Flask(__name__)
    overrides = overrides or {}
    safe = config.load(overrides)  # UnsafeSettings: no app without its secrets and public address
    app.config.update(
        SECRET_KEY=safe.secret_key,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        JSON_SORT_KEYS=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=safe.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(days=14),
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.config.update({k: v for k, v in overrides.items() if k != "SECRET_KEY"})
    app.config.update(PUBLIC_URL=safe.public_url, FLATTR_ADMIN_TOKEN=safe.admin_token)
    app.json.sort_keys = False
    app.session_interface = WebOnlySessions()

    # first of all before-request work: everything after it (token checks included) is bounded
    request_seconds = float(overrides.get("REQUEST_DEADLINE") or settings.get_float("REQUEST_DEADLINE"))
    app.before_request(lambda: deadline.start(request_seconds))

    app.extensions["rpc"] = rpc or RpcPool(
        settings.get("AMQP_URI"), size=settings.get_int("RPC_POOL_SIZE"), timeout=settings.get_float("RPC_TIMEOUT")
    )
    app.extensions["token_cache"] = TokenCache(
        float(overrides.get("TOKEN_CACHE_SECONDS") or settings.get_float("TOKEN_CACHE_SECONDS")),
        offline_ttl=float(overrides.get("TOKEN_CACHE_OFFLINE_SECONDS") or settings.get_float("TOKEN_CACHE_OFFLINE_SECONDS")),
    )
    app.extensions["token_checker"] = TokenChecker(app.extensions["rpc"])
    app.extensions["token_revocations"] = RevocationListener(
        # the broker the RPCs go to (a test's own virtual host); a stand-in RPC client has none
        getattr(app.extensions["rpc"], "config", {}).get("AMQP_URI") or settings.get("AMQP_URI"), app.extensions["token_cache"]
    )
    app.extensions["clicks"] = clicks or ClickClient(settings.get("AMQP_URI"), timeout=settings.get_float("CLICK_TIMEOUT"))

    app.register_blueprint(api)
    app.register_blueprint(ownership)
    app.register_blueprint(money)
    app.register_blueprint(flattr)
    app.register_blueprint(admin)
    pages.install(app)
    app.register_blueprint(web)
    app.register_blueprint(platform)
    app.register_blueprint(button)

    csrf = CSRFProtect(app)
    csrf.exempt(api)
    csrf.exempt(ownership)
    csrf.exempt(money)
    csrf.exempt(flattr)
    csrf.exempt(admin)
    csrf.exempt(platform)
    init_oauth(app)
    csrf.exempt("services.gateway.views.web.issue_token")
    errors.register(app)
    security_headers.init(app)

    @app.errorhandler(CSRFError)
    def _csrf_error(exc):
        return errors.error_response(400, "invalid_request", f"the form is stale or forged: {exc.description}")

    limits = parse_rate_limits(overrides.get("FLATTR_RATE_LIMITS") or settings.get("FLATTR_RATE_LIMITS"))
    storage = overrides.get("FLATTR_RATE_LIMIT_STORAGE") or settings.get("FLATTR_RATE_LIMIT_STORAGE")
    init_rate_limits(app, limits, storage, overrides.get("RATE_LIMIT_KEY_PREFIX"))
    # always on, whatever FLATTR_RATE_LIMITS says: it costs nothing until a password is wrong
    app.extensions["password_throttle"] = PasswordThrottle(shared_store(storage, overrides.get("RATE_LIMIT_KEY_PREFIX")))

    @app.before_request
    def _start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def _record(response):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        if "started" in g:
            metrics.REQUEST_LATENCY.labels(request.method, endpoint).observe(time.perf_counter() - g.started)
        return response

    # outside Flask, innermost first: the click path's own way, the deadline's backstop (which
    # bounds both), the client's address from trusted proxies, then the access log around everything
    app.wsgi_app = ClickFastPath(app.wsgi_app, app)
    app.wsgi_app = deadline.DeadlineGuard(app.wsgi_app, request_seconds)
    proxies = int(overrides.get("FLATTR_TRUSTED_PROXIES") or settings.get_int("FLATTR_TRUSTED_PROXIES"))
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)
    request_log.init(app)
    return app
