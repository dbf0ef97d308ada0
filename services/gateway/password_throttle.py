"""Password checks per account, with growing delays after failures.

Whoever asks (``/login``, HTTP Basic on ``/rest/v2/user/tokens``) and from wherever, an account
gets ``FREE_ATTEMPTS`` password checks; after that each check must wait after the failure before
it: 2 s, then 4, 8, 16... up to ``MAX_DELAY_SECONDS``. A check asked for sooner is refused without
being made, so guessing a password costs days instead of seconds, while its owner, who types it
right once, waits at most a few minutes. A right password starts the count again; the count
lives ``MEMORY_SECONDS`` after the first failure.

Past the free attempts an account's checks run one at a time (a hold in the store while one
runs), so parallel guesses cannot slip through together, and the wait after a failure is written
before the hold is released. A username that does not exist is throttled like one that does, so
the answers tell nothing about which exist. The store is the rate limits' (Redis across
replicas); should it not answer, this process's memory keeps the throttle going until it answers
again.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass

from limits.storage import MemoryStorage, Storage

log = logging.getLogger(__name__)

FREE_ATTEMPTS = 5
FIRST_DELAY_SECONDS = 2
MAX_DELAY_SECONDS = 15 * 60
MEMORY_SECONDS = 24 * 3600
RETRY_STORE_AFTER_SECONDS = 30
# the longest a check may hold an account (a gateway that died mid-check frees it after this)
HOLD_SECONDS = 30


class TooManyAttempts(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"too many password attempts; try again in {retry_after} s")
        self.retry_after = retry_after


def delay_after(attempts: int) -> int:
    """Seconds the next check waits after the ``attempts``-th check (since the last right
    password) failed."""
    if attempts < FREE_ATTEMPTS:
        return 0
    return min(FIRST_DELAY_SECONDS * 2 ** (attempts - FREE_ATTEMPTS), MAX_DELAY_SECONDS)


@dataclass(frozen=True)
class Attempt:
    username: str
    number: int  # since the last right password

    @property
    def held(self) -> bool:
        return self.number > FREE_ATTEMPTS


class PasswordThrottle:
    def __init__(self, storage: Storage):
        self.storage = storage
        self.fallback = MemoryStorage()
        self._store_down_until = 0.0

    def _store(self) -> Storage:
        return self.fallback if time.monotonic() < self._store_down_until else self.storage

    def _do(self, operation: str, *args):
        store = self._store()
        try:
            return getattr(store, operation)(*args)
        except Exception as exc:  # the store's client raises its own errors (redis, memcached...)
            if store is self.fallback:
                raise
            log.warning("password throttle: the store did not answer (%s); this process's memory stands in", type(exc).__name__)
            self._store_down_until = time.monotonic() + RETRY_STORE_AFTER_SECONDS
            return getattr(self.fallback, operation)(*args)

    @staticmethod
    def _key(kind: str, username: str) -> str:
        account = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"password-{kind}:{account}"

    def before_check(self, username: str) -> Attempt:
        """Count one password check of the account, or refuse it (TooManyAttempts) while the
        account must wait or another of its checks is running."""
        hold = self._key("hold", username)
        if self._do("get", hold):
            raise TooManyAttempts(1)
        self._refuse_while_waiting(username)
        attempt = Attempt(username, self._do("incr", self._key("attempts", username), MEMORY_SECONDS))
        if attempt.held:
            if self._do("incr", hold, HOLD_SECONDS) > 1:
                raise TooManyAttempts(1)
            try:
                # a failure may have been written since the look above, just before its hold went
                self._refuse_while_waiting(username)
            except TooManyAttempts:
                self._do("clear", hold)
                raise
        return attempt

    def _refuse_while_waiting(self, username: str) -> None:
        wait = self._key("wait", username)
        if self._do("get", wait):
            raise TooManyAttempts(max(1, math.ceil(self._do("get_expiry", wait) - time.time())))

    def after_check(self, attempt: Attempt, right: bool | None) -> None:
        """``right``: the password was right, wrong, or (None) the check was not made."""
        if right:
            self._do("clear", self._key("attempts", attempt.username))
        elif right is False and delay_after(attempt.number):
            self._do("incr", self._key("wait", attempt.username), delay_after(attempt.number))
        if attempt.held:
            self._do("clear", self._key("hold", attempt.username))
