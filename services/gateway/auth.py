"""Bearer tokens and scopes; HTTP Basic passwords for managing tokens.

The gateway asks accounts to check a token and trusts the answer for a while, so a busy client
costs one RPC now and then, not one per request. A revoked token leaves the cache at once
(``services.gateway.revocations``); should that news stop arriving, entries last
``TOKEN_CACHE_OFFLINE_SECONDS`` at most.
"""
from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from functools import wraps

from flask import current_app, g, request

from services.common.errors import RateLimited, Unauthorized
from services.gateway import deadline, rpc
from services.gateway.errors import ApiError
from services.gateway.password_throttle import TooManyAttempts
from services.gateway.rpc import ServiceUnavailable


@dataclass(frozen=True)
class Caller:
    user_id: int
    username: str
    scopes: frozenset
    kind: str  # "personal" or "oauth"
    token_id: int | None = None


class TokenCache:
    """Checked tokens by ``token_key``. Entries last ``ttl`` while revocations are being heard
    (``go_online``), and ``offline_ttl`` otherwise."""

    def __init__(self, ttl: float, max_entries: int = 100000, offline_ttl: float | None = None):
        self.ttl = ttl
        self.offline_ttl = ttl if offline_ttl is None else min(offline_ttl, ttl)
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Caller]] = {}
        self._by_token_id: dict[int, str] = {}
        self._online = False
        self._lock = threading.Lock()

    def _lifetime(self) -> float:
        return self.ttl if self._online else self.offline_ttl

    def get(self, key: str) -> Caller | None:
        with self._lock:
            entry = self._entries.get(key)
            # entries made while offline are judged by the offline lifetime too
            if entry and time.monotonic() < entry[0] + self._lifetime():
                return entry[1]
            if entry:
                self._drop(key)
            return None

    def put(self, key: str, caller: Caller) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
                self._by_token_id.clear()
            self._entries[key] = (time.monotonic(), caller)
            if caller.token_id is not None:
                self._by_token_id[caller.token_id] = key

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry and entry[1].token_id is not None:
            self._by_token_id.pop(entry[1].token_id, None)

    def forget_token(self, token_id: int) -> None:
        with self._lock:
            key = self._by_token_id.pop(token_id, None)
            if key is not None:
                self._entries.pop(key, None)

    def go_online(self) -> None:
        """Revocations are heard from now on; what was cached before may have missed some."""
        with self._lock:
            self._entries.clear()
            self._by_token_id.clear()
            self._online = True

    def go_offline(self) -> None:
        with self._lock:
            self._online = False


class _Check:
    __slots__ = ("token", "event", "caller", "error")

    def __init__(self, token: str):
        self.token = token
        self.event = threading.Event()
        self.caller = None
        self.error: BaseException | None = None


class TokenChecker:
    """Checks the tokens the cache does not know, many per RPC: every token waiting when a check
    starts goes in the same call, so a gateway that has just started (or a crowd of new readers)
    costs accounts a handful of RPCs a second, not one per reader. ``CHECKERS`` calls run at once,
    each on a thread of its own, started on first use (after the gateway process has forked)."""

    CHECKERS = 4
    MAX_BATCH = 200

    def __init__(self, rpc):
        self.rpc = rpc
        self._waiting: dict[str, _Check] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._threads: list[threading.Thread] = []

    def _ensure_running(self) -> None:
        if len(self._threads) == self.CHECKERS and all(t.is_alive() for t in self._threads):
            return
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            while len(self._threads) < self.CHECKERS:
                thread = threading.Thread(target=self._run, name="token-checker", daemon=True)
                thread.start()
                self._threads.append(thread)

    def check(self, token: str, wait: float) -> Caller | None:
        """The caller the token names, None for an invalid or revoked one; ServiceUnavailable
        (from the RPC) when accounts could not say within ``wait`` seconds."""
        self._ensure_running()
        key = token_key(token)
        with self._lock:
            pending = self._waiting.get(key)
            if pending is None:
                pending = self._waiting[key] = _Check(token)
                self._wake.notify()
        if not pending.event.wait(max(wait, 0.0)):
            raise ServiceUnavailable("accounts did not check the token in time")
        if pending.error is not None:
            raise pending.error
        return pending.caller

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._waiting:
                    self._wake.wait()
                keys = list(self._waiting)[: self.MAX_BATCH]
                batch = {k: self._waiting.pop(k) for k in keys}
            try:
                found = self.rpc.call("accounts", "authenticate_tokens", [c.token for c in batch.values()])
                for key, pending in batch.items():
                    info = found.get(key)
                    if info is not None:
                        pending.caller = Caller(info["user_id"], info["username"], frozenset(info["scopes"]), info["kind"], info.get("token_id"))
            except Exception as exc:  # every token of the batch waits on the same answer
                for pending in batch.values():
                    pending.error = exc
            for pending in batch.values():
                pending.event.set()


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
        current_app.extensions["token_revocations"].ensure_running()
        key = token_key(token)
        caller = cache.get(key)
        if caller is None:
            caller = current_app.extensions["token_checker"].check(token, deadline.remaining(10.0))
            if caller is None:
                raise ApiError(401, "unauthorized", "the access token is invalid or revoked")
            cache.put(key, caller)
    g.caller = caller
    return caller


def require(*scopes: str, personal: bool = False, any_of: tuple[str, ...] = ()):
    """The view needs a token with every scope named, and one of ``any_of`` when given;
    ``personal`` refuses OAuth clients' tokens (the money endpoints)."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            caller = current_caller()
            if caller is None:
                raise ApiError(401, "unauthorized", "this resource needs an access token", {"WWW-Authenticate": "Bearer"})
            if personal and caller.kind != "personal":
                raise ApiError(403, "insufficient_scope", "money endpoints accept only personal access tokens")
            missing = [s for s in scopes if s not in caller.scopes]
            if missing:
                raise ApiError(403, "insufficient_scope", f"the token lacks the scope: {' '.join(missing)}")
            if any_of and not caller.scopes & set(any_of):
                raise ApiError(403, "insufficient_scope", f"the token needs one of the scopes: {' '.join(any_of)}")
            return view(*args, **kwargs)

        wrapper.required_scopes = scopes
        wrapper.any_of_scopes = any_of
        return wrapper

    return decorator


BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="flattr"'}


def check_password(username: str, password: str) -> dict:
    """The user, if the password is theirs: Unauthorized if not, TooManyAttempts while the
    account must wait (``services.gateway.password_throttle``). Every password check goes here."""
    throttle = current_app.extensions["password_throttle"]
    attempt = throttle.before_check(username)
    right = None
    try:
        user = rpc.call("accounts", "authenticate_password", username, password)
        right = True
    except Unauthorized:
        right = False
        raise
    finally:
        throttle.after_check(attempt, right)
    return user


SECOND_FACTOR_HEADER = "X-Flattr-OTP"


def check_second_factor(user_id: int, code: str) -> dict:
    """Accounts checks the authenticator code or a recovery code (each TOTP step and each recovery
    code works once; wrong codes lock the account's second factor for a while): Unauthorized if
    wrong, RateLimited while locked."""
    return rpc.call("accounts", "check_two_factor", user_id, code)


def password_required(view):
    """The view needs the user's own ``username:password`` by HTTP Basic, not a token: making,
    listing and revoking tokens (a stolen token must not mint or hide others), and, for a user who
    turned on two-factor sign-in, a code in ``X-Flattr-OTP``. The user is in ``g.password_user``."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        auth = request.authorization
        if auth is None or auth.type != "basic" or not auth.username or auth.password is None or "\x00" in auth.username + auth.password:
            raise ApiError(401, "unauthorized", "sign in with HTTP Basic username:password", BASIC_CHALLENGE)
        try:
            g.password_user = check_password(auth.username, auth.password)
        except Unauthorized:
            raise ApiError(401, "unauthorized", "wrong username or password", BASIC_CHALLENGE) from None
        except TooManyAttempts as exc:
            raise ApiError(403, "rate_limit_exceeded", str(exc), {"Retry-After": str(exc.retry_after)}) from None
        if g.password_user.get("second_factor_required"):
            code = request.headers.get(SECOND_FACTOR_HEADER, "").strip()
            if not code:
                raise ApiError(401, "two_factor_required", f"this account signs in with a second factor: send the authenticator app's "
                               f"code, or a recovery code, in the {SECOND_FACTOR_HEADER} header", BASIC_CHALLENGE)
            try:
                check_second_factor(g.password_user["id"], code)
            except Unauthorized:
                raise ApiError(401, "unauthorized", "wrong two-factor code", BASIC_CHALLENGE) from None
            except RateLimited as exc:
                raise ApiError(403, "rate_limit_exceeded", exc.description) from None
        return view(*args, **kwargs)

    wrapper.needs_password = True
    return wrapper
