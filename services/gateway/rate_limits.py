"""Rate limits (Flask-Limiter), in one store that every gateway process and replica shares.

- The API (``/rest/v2``): per token with one, else per client address, with ``X-RateLimit-*``
  headers. The click path's own way through the gateway (``services.gateway.click_fast_path``)
  counts its flattrs in the same bucket, by ``rate_limit_args``.
- Sign-ups, by the API or the ``/signup`` form: one bucket per address.
- Where a secret is guessed, the failures per address: wrong passwords at ``/login``, refused
  code exchanges at ``/oauth/token``, wrong admin tokens under ``/admin``. A request is refused
  once its address has failed that often in the window, whatever it sends then.

Passwords are also throttled per account (``services.gateway.password_throttle``), always,
whatever ``FLATTR_RATE_LIMITS`` says. The client address is ``REMOTE_ADDR``, which
``FLATTR_TRUSTED_PROXIES`` (Werkzeug's ProxyFix) sets from ``X-Forwarded-For`` behind proxies;
without that setting ``X-Forwarded-For`` is ignored, so a client cannot pick its own address.

A store that does not answer does not stop the platform: the request is let through and the
error logged (Flask-Limiter's ``swallow_errors``).
"""
from __future__ import annotations

from flask import Flask, g, request
from flask_limiter import Limiter
from limits import parse as parse_limit
from limits.storage import Storage, storage_from_string

from services.gateway.auth import bearer_token, token_key

DEFAULT_LIMITS = {
    "token": "5000/hour",
    "address": "1000/hour",
    "signup": "100/hour",
    "login": "10/minute",
    "oauth": "30/minute",
    "admin": "10/minute",
}
# a store that does not answer within this long is treated as down (the request goes on)
STORE_TIMEOUT_SECONDS = 1.0


def parse_rate_limits(value: str) -> dict | None:
    """``off`` disables limits; ``on`` keeps the defaults; ``token=10/minute;signup=5/hour`` overrides."""
    value = (value or "on").strip()
    if value.lower() == "off":
        return None
    limits = dict(DEFAULT_LIMITS)
    if value.lower() in ("on", "default"):
        return limits
    for part in value.split(";"):
        if not part.strip():
            continue
        name, _, limit = part.partition("=")
        name = name.strip()
        if name not in DEFAULT_LIMITS or not limit.strip():
            raise ValueError(f"FLATTR_RATE_LIMITS: unknown part {part!r}; use {'=, '.join(DEFAULT_LIMITS)}=")
        parse_limit(limit.strip())  # a malformed limit fails here, at start-up
        limits[name] = limit.strip()
    return limits


def client_address() -> str:
    return request.remote_addr or "unknown"


def _api_key() -> str:
    token = bearer_token()
    return f"token:{token_key(token)}" if token else f"address:{client_address()}"


def rate_limit_args(token_digest: str, endpoint: str) -> tuple[str, str]:
    """The bucket of a token's default API limit on one view, as Flask-Limiter names it (its key,
    then its scope: the view's endpoint), for code that counts outside Flask."""
    return f"token:{token_digest}", endpoint


def storage_options(storage_uri: str, key_prefix: str | None) -> dict:
    if not storage_uri.startswith(("redis", "rediss", "valkey")):
        return {}
    options = {"socket_timeout": STORE_TIMEOUT_SECONDS, "socket_connect_timeout": STORE_TIMEOUT_SECONDS}
    if key_prefix:
        options["key_prefix"] = key_prefix
    return options


def shared_store(storage_uri: str, key_prefix: str | None = None) -> Storage:
    """The store the limits are counted in, for counters of the gateway's own (password throttles)."""
    return storage_from_string(storage_uri, **storage_options(storage_uri, key_prefix))


def init_rate_limits(app: Flask, limits: dict | None, storage_uri: str, key_prefix: str | None = None) -> Limiter:
    def default_limit() -> str:
        return limits["token"] if bearer_token() else limits["address"]

    app.after_request(_restore_retry_after)  # runs after Flask-Limiter's own (registered below)
    limiter = Limiter(
        key_func=_api_key,
        app=app,
        default_limits=[default_limit] if limits else [],
        default_limits_exempt_when=lambda: not request.path.startswith("/rest/v2"),
        storage_uri=storage_uri,
        storage_options=storage_options(storage_uri, key_prefix),
        headers_enabled=True,
        enabled=limits is not None,
        strategy="fixed-window",
        swallow_errors=True,
    )
    if limits:
        not_a_post = lambda: request.method != "POST"  # noqa: E731 - showing a form is free
        sign_up = limiter.shared_limit(limits["signup"], scope="signup", key_func=client_address, exempt_when=not_a_post)
        _wrap(app, "api.sign_up", sign_up)
        _wrap(app, "web.signup", sign_up)
        wrong_password = limiter.limit(
            limits["login"], key_func=client_address, exempt_when=not_a_post, deduct_when=lambda r: r.status_code == 401
        )
        _wrap(app, "web.login", wrong_password)
        refused_exchange = limiter.limit(limits["oauth"], key_func=client_address, deduct_when=lambda r: r.status_code in (400, 401))
        _wrap(app, "web.issue_token", refused_exchange)
        wrong_admin_token = limiter.limit(limits["admin"], key_func=client_address, deduct_when=lambda r: r.status_code == 401)
        wrong_admin_token(app.blueprints["admin"])
    app.after_request(_remember_retry_after)  # runs before Flask-Limiter's
    app.extensions["rate_limiter"] = limiter
    token_limit = parse_limit(limits["token"]) if limits else None
    app.extensions["rate_limit_for_token"] = lambda: token_limit
    return limiter


# Flask-Limiter writes Retry-After on every answer it counts: its window's reset, or the later of
# that and the answer's own, so a 503's "in 5 s" or a password's wait would read "in an hour". An
# answer keeps its own Retry-After (or none); a refusal by the limiter says when its window resets.


def _remember_retry_after(response):
    g.own_retry_after = response.headers.get("Retry-After")
    return response


def _restore_retry_after(response):
    own = g.pop("own_retry_after", None)
    if own is None:
        response.headers.pop("Retry-After", None)
    else:
        response.headers["Retry-After"] = own
    return response


def _wrap(app: Flask, endpoint: str, decorator) -> None:
    app.view_functions[endpoint] = decorator(app.view_functions[endpoint])
