"""Tokens the gateway has not seen are checked many per RPC: a crowd of new readers (or a gateway
that has just started) costs accounts a few calls, not one per reader."""
import threading

import requests
from services.gateway.metrics import REGISTRY

from tests.factories import personal_token, sign_up

READERS = 40


def _token_checks() -> float:
    return REGISTRY.get_sample_value("gateway_rpc_seconds_count", {"service": "accounts", "method": "authenticate_tokens", "outcome": "ok"}) or 0.0


def test_a_crowd_of_new_tokens_is_checked_in_a_few_calls_and_each_gets_its_own_answer(all_services, gateway_factory):
    base = gateway_factory()
    users = [sign_up(base) for _ in range(READERS)]
    tokens = [personal_token(base, user, "extendedread") for user in users]
    before = _token_checks()
    answers = [None] * READERS

    def who_am_i(i):
        headers = {"Authorization": f"Bearer {tokens[i]}"} if i % 10 else {"Authorization": "Bearer not-a-token"}
        answers[i] = requests.get(f"{base}/rest/v2/user", headers=headers, timeout=15)

    threads = [threading.Thread(target=who_am_i, args=(i,)) for i in range(READERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, answer in enumerate(answers):
        if i % 10:
            assert answer.status_code == 200 and answer.json()["username"] == users[i]["username"]
        else:
            assert answer.status_code == 401
    calls = _token_checks() - before
    assert 1 <= calls < READERS / 2, calls
