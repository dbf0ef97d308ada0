"""Bearer tokens and scopes.

The gateway asks accounts to check a token and trusts the answer for a few seconds
(``TOKEN_CACHE_SECONDS``), so a busy client costs one RPC per few seconds, not per request;
a revoked token stops working within that time.
"""
from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from functools import wraps

from flask import current_app, g, request

from services.common.errors import Unauthorized
from services.gateway.errors import ApiError


@dataclass(frozen=True)
class Caller:
    user_id: int
    username: str
    scopes: frozenset
    kind: str  # "personal" or "oauth"


class TokenCache:
    def __init__(self, ttl: float, max_entries: int = 10000):
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Caller]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Caller | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry and entry[0] > time.monotonic():
                return entry[1]
            self._entries.pop(key, None)
            return None

    def put(self, key: str, caller: Caller) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + self.ttl, caller)


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def current_caller() -> Caller | None:
    """The caller named by the bearer token, or None without one; a bad token is a 401."""
    if "caller" in g:
        return g.caller
    token = bearer_token()
    caller = None
    if token:
        cache: TokenCache = current_app.extensions["token_cache"]
        key = token_key(token)
        caller = cache.get(key)
        if caller is None:
            try:
                info = current_app.extensions["rpc"].call("accounts", "authenticate_token", token)
            except Unauthorized:
                raise ApiError(401, "unauthorized", "the access token is invalid or revoked") from None
            caller = Caller(info["user_id"], info["username"], frozenset(info["scopes"]), info["kind"])
            cache.put(key, caller)
    g.caller = caller
    return caller


def require(*scopes: str, personal: bool = False):
    """The view needs a token with every scope named; ``personal`` refuses OAuth clients' tokens."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            caller = current_caller()
            if caller is None:
                raise ApiError(401, "unauthorized", "this resource needs an access token", {"WWW-Authenticate": "Bearer"})
            missing = [s for s in scopes if s not in caller.scopes]
            if missing:
                raise ApiError(403, "insufficient_scope", f"the token lacks the scope: {' '.join(missing)}")
            if personal and caller.kind != "personal":
                raise ApiError(403, "insufficient_scope", "money endpoints accept only personal access tokens")
            return view(*args, **kwargs)

        wrapper.required_scopes = scopes
        return wrapper

    return decorator
