"""Nothing waits forever: with any one process of the platform frozen (SIGSTOP), or the broker,
every kind of request ends within the gateway's deadline (its answer, or 503 with Retry-After),
nothing is half-written, and all is normal again after SIGCONT.

The whole of ``make dev`` runs (``python -m deploy.dev``) on a private RabbitMQ node, so the
broker can be frozen without disturbing anyone, and a database of its own. The gateway itself is
not frozen: a frozen gateway answers nothing, and it is the load balancer's part to send its
connections elsewhere.
"""
import os
import signal
import threading
import time
import uuid

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from testsupport import devstack, instances
from tests.factories import ADMIN_TOKEN, PASSWORD, eventually

DEADLINE = 3.0
# a loaded machine's scheduling
SLACK = 0.5
FROZEN = ("accounts", "clicks", "click-worker", "settlement", "payouts", "batch", "broker")


@pytest.fixture
def stack(private_rabbit, infra, tmp_path):
    name = f"flattr_deadline_{uuid.uuid4().hex[:12]}"
    url = make_url(infra.admin_db_url).set(database=name).render_as_string(hide_password=False)
    port = instances.free_port()
    env = dict(
        os.environ,
        AMQP_URI=private_rabbit.amqp_uri,
        ACCOUNTS_DATABASE_URL=url,
        CLICKS_DATABASE_URL=url,
        SETTLEMENT_DATABASE_URL=url,
        GATEWAY_PORT=str(port),
        FLATTR_RATE_LIMITS="off",
        FLATTR_ADMIN_TOKEN=ADMIN_TOKEN,
        REQUEST_DEADLINE=str(DEADLINE),
        RPC_TIMEOUT=str(DEADLINE),
        CLICK_TIMEOUT=str(DEADLINE),
        CLAIM_FETCH_TIMEOUT="1",
        BUTTON_CACHE_SECONDS="0.1",
        CLICK_WORKER_HEARTBEAT=str(tmp_path / "click-worker.heartbeat"),
        SMTP_PORT=str(instances.free_port()),  # make dev's local SMTP server, on a port of this test's own
        MAIL_CATCHER_DIR=str(tmp_path / "mail"),
    )
    log = tmp_path / "dev.log"
    process = devstack.start(env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        devstack.wait_ready(process, base, log)
        yield process, base, log, url
    finally:
        private_rabbit.thaw()
        devstack.kill_group(process)
        admin = create_engine(infra.admin_db_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Reader:
    """A reader with a token (checked once, so the gateway has it cached), a budget and a thing."""

    def __init__(self, base: str):
        self.base = base
        self.username = f"r{uuid.uuid4().hex[:10]}"
        assert requests.post(f"{base}/rest/v2/users", json={"username": self.username, "email": f"{self.username}@example.com", "password": PASSWORD}).status_code == 201
        token = requests.post(f"{base}/rest/v2/user/tokens", auth=(self.username, PASSWORD), data={"scope": "flattr thing extendedread wallet"}).json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}
        assert requests.get(f"{base}/rest/v2/user", headers=self.headers).status_code == 200
        self.thing = requests.post(f"{base}/rest/v2/things", headers=self.headers, json={"url": f"https://{self.username}.example/", "title": "A thing to look at"}).json()["id"]


def requests_of_every_kind(base: str, reader: Reader, other: Reader, round_id: str) -> dict:
    """name -> (method, path, keyword arguments) for one round; each writes something new."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    return {
        "get thing": ("GET", f"/rest/v2/things/{other.thing}", {"headers": reader.headers}),
        "search": ("GET", "/rest/v2/things/search", {"params": {"query": "thing"}}),
        "create thing": ("POST", "/rest/v2/things", {"headers": reader.headers, "json": {"url": f"https://made.example/{round_id}", "title": "Made in a round"}}),
        "flattr by url": ("POST", "/rest/v2/flattr", {"headers": reader.headers, "json": {"url": f"https://flattred.example/{round_id}"}}),
        "flattr": ("POST", f"/rest/v2/things/{other.thing}/flattr", {"headers": reader.headers}),
        "budget": ("PUT", "/rest/v2/user/budget", {"headers": reader.headers, "json": {"amount": 300}}),
        "deposit": ("POST", "/rest/v2/user/deposits", {"headers": reader.headers, "json": {"amount": 1000, "idempotency_key": round_id}}),
        "wallet": ("GET", "/rest/v2/user/wallet", {"headers": reader.headers}),
        "payout": ("POST", "/rest/v2/user/payouts", {"headers": reader.headers, "json": {"amount": 1000, "idempotency_key": round_id}}),
        "sign-up": ("POST", "/rest/v2/users", {"json": {"username": f"s{round_id[:12]}", "email": f"s{round_id[:12]}@example.com", "password": PASSWORD}}),
        "new token": ("POST", "/rest/v2/user/tokens", {"auth": (reader.username, PASSWORD), "data": {"scope": "flattr"}}),
        "button": ("GET", f"/button/{other.thing}", {}),
        "badge": ("GET", f"/button/{other.thing}.svg", {}),
        "periods": ("GET", "/admin/periods", {"headers": admin}),
        "ready": ("GET", "/readyz", {}),
    }


def send_all(base: str, kinds: dict) -> dict:
    """Every request at once; name -> (status or the client's exception, seconds, headers)."""
    results = {}

    def one(name, method, path, kwargs):
        started = time.monotonic()
        try:
            response = requests.request(method, base + path, timeout=DEADLINE + 10, **kwargs)
            results[name] = (response.status_code, time.monotonic() - started, response.headers)
        except requests.RequestException as exc:
            results[name] = (type(exc).__name__, time.monotonic() - started, {})

    threads = [threading.Thread(target=one, args=(name, *spec)) for name, spec in kinds.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.slow
def test_every_request_ends_within_its_deadline_whichever_process_is_frozen(stack, private_rabbit):
    process, base, log, db_url = stack
    reader, other = Reader(base), Reader(base)
    deposit_keys = []
    for target in FROZEN:
        pid = devstack.started_pids(log.read_text()).get(target)
        freeze = private_rabbit.freeze if target == "broker" else (lambda: os.kill(pid, signal.SIGSTOP))
        thaw = private_rabbit.thaw if target == "broker" else (lambda: os.kill(pid, signal.SIGCONT))
        round_id = uuid.uuid4().hex
        deposit_keys.append(round_id)
        freeze()
        try:
            results = send_all(base, requests_of_every_kind(base, reader, other, round_id))
        finally:
            thaw()
        for name, (status, seconds, headers) in results.items():
            assert isinstance(status, int), f"{target} frozen: {name} got no answer ({status} after {seconds:.1f} s)"
            assert seconds <= DEADLINE + SLACK, f"{target} frozen: {name} answered {status} after {seconds:.1f} s"
            if status == 503:
                assert headers.get("Retry-After"), f"{target} frozen: {name} answered 503 without Retry-After"
            assert status != 500, f"{target} frozen: {name} answered 500"
        # all normal again after SIGCONT: every kind gets its usual answer
        def normal():
            again = send_all(base, requests_of_every_kind(base, reader, other, round_id))
            return all(isinstance(s, int) and s < 500 for s, _, _ in again.values())

        assert eventually(normal, timeout=30, interval=0.5), f"not normal after {target} was thawed:\n{log.read_text()[-4000:]}"

    # nothing half-written: each deposit key is in the ledger once, with its amount; the ledger holds
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT idempotency_key, count(*), min(amount) FROM settlement.deposits WHERE idempotency_key = ANY(:k) GROUP BY 1"),
            {"k": deposit_keys},
        ).all()
        made = conn.execute(text("SELECT count(*), count(DISTINCT url) FROM accounts.things WHERE url LIKE 'https://made.example/%'")).one()
    engine.dispose()
    assert all(count == 1 and amount == 1000 for _, count, amount in rows), rows
    assert made[0] == made[1]
    check = requests.get(f"{base}/admin/ledger/check", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    assert check.status_code == 200, check.text
