import time

from services.gateway.auth import Caller, TokenCache


def _caller(token_id=7):
    return Caller(1, "alice", frozenset({"flattr"}), "personal", token_id)


def test_while_revocations_are_heard_a_token_is_trusted_for_the_long_lifetime():
    cache = TokenCache(ttl=60, offline_ttl=0.05)
    cache.go_online()
    cache.put("k", _caller())
    time.sleep(0.1)
    assert cache.get("k") == _caller()


def test_without_revocations_a_token_is_trusted_only_briefly():
    cache = TokenCache(ttl=60, offline_ttl=0.05)
    cache.put("k", _caller())
    assert cache.get("k") == _caller()
    time.sleep(0.1)
    assert cache.get("k") is None


def test_losing_the_revocations_shortens_what_was_cached_before():
    cache = TokenCache(ttl=60, offline_ttl=0.05)
    cache.go_online()
    cache.put("k", _caller())
    cache.go_offline()
    time.sleep(0.1)
    assert cache.get("k") is None


def test_a_revoked_token_is_forgotten_and_reconnecting_forgets_everything():
    cache = TokenCache(ttl=60, offline_ttl=60)
    cache.go_online()
    cache.put("a", _caller(1))
    cache.put("b", _caller(2))
    cache.forget_token(1)
    assert cache.get("a") is None and cache.get("b") is not None
    cache.go_online()  # a reconnect: revocations may have been missed meanwhile
    assert cache.get("b") is None
