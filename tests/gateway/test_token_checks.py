"""Tokens the gateway has not seen are checked many per RPC: a crowd of new readers (or a gateway
that has just started) costs accounts a few calls, not one per reader."""
import threading
import time

import requests
from sqlalchemy import text
from services.gateway.metrics import REGISTRY

from testsupport.locks import waiting_on_locks
from tests.factories import personal_token, sign_up

READERS = 40


def _token_checks() -> float:
    return REGISTRY.get_sample_value("gateway_rpc_seconds_count", {"service": "accounts", "method": "authenticate_tokens", "outcome": "ok"}) or 0.0


def test_a_crowd_of_new_tokens_is_checked_in_a_few_calls_and_each_gets_its_own_answer(all_services, gateway_factory, db):
    """The crowd arrives while accounts is slow to answer (its tokens table held for a moment), as
    a crowd does on a busy machine: the tokens that come while the checks are out wait together
    for the next call. (Without the hold, how many calls a crowd costs depends on how fast this
    machine starts 40 requests, not on the gateway.)"""
    base = gateway_factory()
    users = [sign_up(base) for _ in range(READERS)]
    tokens = [personal_token(base, user, "extendedread") for user in users]
    before = _token_checks()
    answers = [None] * READERS
    hold = db.connect()
    hold.execute(text("LOCK TABLE accounts.access_tokens IN ACCESS EXCLUSIVE MODE"))

    def who_am_i(i):
        headers = {"Authorization": f"Bearer {tokens[i]}"} if i % 10 else {"Authorization": "Bearer not-a-token"}
        answers[i] = requests.get(f"{base}/rest/v2/user", headers=headers, timeout=15)

    threads = [threading.Thread(target=who_am_i, args=(i,)) for i in range(READERS)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while waiting_on_locks(db) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(1.0)  # the rest of the crowd arrives meanwhile
    finally:
        hold.rollback()
        hold.close()
    for t in threads:
        t.join()
    for i, answer in enumerate(answers):
        if i % 10:
            assert answer.status_code == 200 and answer.json()["username"] == users[i]["username"]
        else:
            assert answer.status_code == 401
    calls = _token_checks() - before
    assert 1 <= calls < READERS / 2, calls
