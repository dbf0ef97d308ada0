"""The per-account password throttle's rules, on the in-memory store (no waiting: the clock of the
waits is the store's expiry, checked by tests/gateway/test_throttles.py against Redis)."""
import pytest
from limits.storage import MemoryStorage

from services.gateway.password_throttle import FREE_ATTEMPTS, MAX_DELAY_SECONDS, PasswordThrottle, TooManyAttempts, delay_after


def fail(throttle: PasswordThrottle, username: str, times: int = 1) -> None:
    for _ in range(times):
        throttle.after_check(throttle.before_check(username), right=False)


def test_the_delays_start_after_the_free_attempts_double_and_stop_growing():
    assert [delay_after(n) for n in range(1, FREE_ATTEMPTS)] == [0] * (FREE_ATTEMPTS - 1)
    delays = [delay_after(n) for n in range(FREE_ATTEMPTS, FREE_ATTEMPTS + 12)]
    assert delays[0] >= 1 and all(b == min(2 * a, MAX_DELAY_SECONDS) for a, b in zip(delays, delays[1:]))
    assert delay_after(10_000) == MAX_DELAY_SECONDS


def test_an_account_past_its_free_attempts_waits_and_a_right_password_starts_again():
    throttle = PasswordThrottle(MemoryStorage())
    fail(throttle, "alice", FREE_ATTEMPTS)
    with pytest.raises(TooManyAttempts) as refused:
        throttle.before_check("alice")
    assert 1 <= refused.value.retry_after <= delay_after(FREE_ATTEMPTS)
    fail(throttle, "bob")  # other accounts are not concerned
    throttle.storage.clear(throttle._key("wait", "alice"))  # as if the wait were over
    throttle.after_check(throttle.before_check("alice"), right=True)
    fail(throttle, "alice", FREE_ATTEMPTS)  # the count started again


def test_past_the_free_attempts_an_accounts_checks_run_one_at_a_time():
    throttle = PasswordThrottle(MemoryStorage())
    fail(throttle, "carol", FREE_ATTEMPTS - 1)
    free = throttle.before_check("carol")  # the last free one, still running
    held = throttle.before_check("carol")  # past them: it holds the account while it runs
    with pytest.raises(TooManyAttempts):
        throttle.before_check("carol")
    throttle.after_check(held, right=None)  # no answer (a service away): the hold goes, nothing else
    throttle.after_check(free, right=False)  # the fifth failure: the account waits
    with pytest.raises(TooManyAttempts):
        throttle.before_check("carol")


class DownStore(MemoryStorage):
    def incr(self, *args, **kwargs):
        raise ConnectionError("store down")

    def get(self, *args, **kwargs):
        raise ConnectionError("store down")


def test_a_store_that_does_not_answer_is_stood_in_for_by_memory():
    throttle = PasswordThrottle(DownStore())
    fail(throttle, "dave", FREE_ATTEMPTS)
    with pytest.raises(TooManyAttempts):
        throttle.before_check("dave")
