"""`make dev` as a user runs it: every process starts, the platform serves, a signal stops it all."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.factories import PASSWORD, bearer, eventually
from tests.pages import PageServer, Route, claim_page

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture
def dev_stack(infra, vhost, tmp_path):
    name = f"flattr_dev_{os.getpid()}_{int(time.time())}"
    url = make_url(infra.admin_db_url).set(database=name).render_as_string(hide_password=False)
    port = free_port()
    env = dict(
        os.environ,
        AMQP_URI=vhost.uri,
        ACCOUNTS_DATABASE_URL=url,
        CLICKS_DATABASE_URL=url,
        SETTLEMENT_DATABASE_URL=url,
        GATEWAY_PORT=str(port),
        FLATTR_RATE_LIMITS="off",
        FLATTR_ADMIN_TOKEN="dev-admin",
        CLAIM_ALLOW_PRIVATE_ADDRESSES="on",  # the claim page is served by the test on 127.0.0.1
    )
    log = open(tmp_path / "dev.log", "w")
    # its own session, like a terminal's job: the test signals that group as a user's Ctrl-C would
    process = subprocess.Popen([sys.executable, "-m", "deploy.dev"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    yield process, f"http://127.0.0.1:{port}", tmp_path / "dev.log"
    if group_alive(process.pid):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    log.close()
    admin = create_engine(infra.admin_db_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.slow
def test_dev_stack_is_ready_within_60_seconds_serves_and_stops_within_3(dev_stack):
    process, base, log = dev_stack
    started = time.monotonic()
    while True:
        try:
            if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert process.poll() is None, log.read_text()
        assert time.monotonic() - started < 60, log.read_text()
        time.sleep(0.25)
    print(f"ready after {time.monotonic() - started:.1f}s")

    # a new user signs up, gets a token, sets a budget and creates a thing, by form as old clients do
    assert requests.post(f"{base}/rest/v2/users", data={"username": "devuser", "email": "dev@example.com", "password": PASSWORD}).status_code == 201
    token = requests.post(f"{base}/rest/v2/user/tokens", auth=("devuser", PASSWORD), data={"scope": "thing"}).json()["access_token"]
    token_all = requests.post(f"{base}/rest/v2/user/tokens", auth=("devuser", PASSWORD), data={"scope": "thing flattr"}).json()["access_token"]
    assert requests.put(f"{base}/rest/v2/user/budget", data={"amount": "500"}, headers=bearer(token)).status_code == 200
    created = requests.post(f"{base}/rest/v2/things", data={"url": "https://dev.example/", "title": "Made in dev"}, headers=bearer(token))
    assert created.status_code == 201
    # the session cookie works across the gateway's worker processes (one secret for all of them)
    assert requests.get(f"{base}/signup").status_code == 200

    # money: a deposit covers the budget; a creator paid through an adjustment is paid out
    deposit = requests.post(f"{base}/rest/v2/user/deposits", data={"amount": "1200", "idempotency_key": "dev-1"}, headers=bearer(token))
    assert deposit.status_code == 201
    wallet = eventually(lambda: (w := requests.get(f"{base}/rest/v2/user/wallet", headers=bearer(token)).json())["has_means"] and w)
    assert wallet["balance"] == 1200 and wallet["budget"] == 500 and wallet["period"]["id"]
    # a flattr of a URL nobody registered: the click workers answer, and the thing exists unclaimed
    flattred = requests.post(f"{base}/rest/v2/flattr", data={"url": "https://someone.example/article"}, headers=bearer(token_all))
    assert flattred.status_code == 200, flattred.text
    assert requests.post(f"{base}/rest/v2/flattr", data={"url": "https://someone.example/article"}, headers=bearer(token_all)).status_code == 403
    admin = {"Authorization": "Bearer dev-admin"}
    credit = {"username": "devuser", "account": "revenue", "amount": 2500, "reason": "demo revenue", "idempotency_key": "dev-rev"}
    assert requests.post(f"{base}/admin/adjustments", json=credit, headers=admin).status_code == 201
    payout = requests.post(f"{base}/rest/v2/user/payouts", json={"amount": 2000, "idempotency_key": "dev-p"}, headers=bearer(token))
    assert payout.status_code == 202
    assert eventually(
        lambda: requests.get(f"{base}/rest/v2/user/payouts/{payout.json()['id']}", headers=bearer(token)).json()["state"] == "completed",
        timeout=10,
    )
    check = requests.get(f"{base}/admin/ledger/check", headers=admin)
    assert check.status_code == 200 and check.json()["totals"]["paid_out"] == 2000

    # a period: a reader funds and flattrs devuser's thing and a page nobody claimed yet; the
    # operator closes the period; the settlement pays devuser and holds the page's share in escrow
    pages = PageServer()
    try:
        page = pages.url("/unclaimed-post")
        assert requests.post(f"{base}/rest/v2/users", json={"username": "devreader", "email": "r@example.com", "password": PASSWORD}).status_code == 201
        reader = bearer(requests.post(f"{base}/rest/v2/user/tokens", auth=("devreader", PASSWORD), data={"scope": "flattr"}).json()["access_token"])
        assert requests.put(f"{base}/rest/v2/user/budget", json={"amount": 1001}, headers=reader).status_code == 200
        assert requests.post(f"{base}/rest/v2/user/deposits", json={"amount": 3000, "idempotency_key": "r-1"}, headers=reader).status_code == 201
        assert eventually(lambda: requests.get(f"{base}/rest/v2/user/wallet", headers=reader).json()["has_means"])
        assert requests.post(f"{base}/rest/v2/things/{created.json()['id']}/flattr", headers=reader).status_code == 200
        unclaimed = requests.post(f"{base}/rest/v2/flattr", json={"url": page}, headers=reader).json()["thing"]["id"]
        closed = requests.post(f"{base}/admin/periods/close", headers=admin).json()["period"]
        settled = eventually(
            lambda: (s := requests.get(f"{base}/admin/settlements/{closed}", headers=admin).json())["state"] == "settled" and s, timeout=20
        )
        # devreader's budget and devuser's (who flattred someone.example earlier), 10% fee on each
        assert settled and settled["totals"]["charged"] == 1001 + 500 and settled["totals"]["fees"] == 100 + 50
        statement = requests.get(f"{base}/rest/v2/user/statements/{closed}", headers=reader).json()
        spent = {line["thing_id"]: (line["amount"], line["destination"]) for line in statement["spent"]}
        to_thing, to_page = spent[created.json()["id"]][0], spent[unclaimed][0]
        # 901 cents over two clicks: 450 and 451, by the documented rule
        assert sorted([to_thing, to_page]) == [450, 451] and spent[unclaimed][1] == "escrow"
        assert statement["charged"]["amount"] == 1001 and statement["charged"]["fee"] == 100
        revenue = requests.get(f"{base}/rest/v2/user/revenue", headers=bearer(token)).json()
        assert revenue["balance"] == 500 + to_thing and revenue["periods"] == [{"period": closed, "amount": to_thing}]
        assert settled["totals"]["escrow"] == to_page + 450  # and devuser's 450 for someone.example
        assert requests.get(f"{base}/admin/ledger/check", headers=admin).status_code == 200
        # devuser claims the page: its escrow becomes devuser's revenue
        pages.routes["/unclaimed-post"] = Route(claim_page(owner="devuser"))
        claimed = requests.post(f"{base}/rest/v2/things/{unclaimed}/claim", headers=bearer(token))
        assert claimed.status_code == 200, claimed.text
        assert eventually(
            lambda: requests.get(f"{base}/rest/v2/user/revenue", headers=bearer(token)).json()["balance"] == 500 + 901, timeout=5
        )
        check = requests.get(f"{base}/admin/ledger/check", headers=admin)
        assert check.status_code == 200 and check.json()["totals"]["escrow"] == 450  # someone.example is still unclaimed
    finally:
        pages.close()

    stop_sent = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)
    while time.monotonic() - stop_sent < 10:
        process.poll()  # reap the runner itself, or its zombie would count as alive
        if not group_alive(process.pid):
            break
        time.sleep(0.05)
    stopped_after = time.monotonic() - stop_sent
    assert not group_alive(process.pid), log.read_text()
    assert stopped_after < 3, f"took {stopped_after:.1f}s to stop"
    print(f"stopped after {stopped_after:.2f}s")
