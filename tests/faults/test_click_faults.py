"""The click path under faults: a worker SIGKILLed mid-batch, RabbitMQ restarted, PostgreSQL
restarted. Every click answered 2xx is stored exactly once; no click is counted twice; during an
outage the gateway answers 503, never a false 2xx.

RabbitMQ and PostgreSQL are private instances these tests start (testsupport/instances.py), so
the machine's own services are never disturbed.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import eventlet
import pytest
import requests
from sqlalchemy import create_engine, text

from testsupport.seeding import seed_click_path
from services.accounts.service import AccountsService
from services.common.migrate import upgrade
from tests.factories import SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
READERS, THINGS = 60, 40

pytestmark = pytest.mark.slow


class Load:
    """Readers flattring things at random from many connections; every answer is recorded."""

    def __init__(self, base: str, tokens: list[str], concurrency: int = 24):
        self.base, self.tokens = base, tokens
        self.answers: list[tuple[int, int, int]] = []  # (reader index, thing id, HTTP status)
        self.pool = eventlet.GreenPool(concurrency)
        self.running = True
        self.rng = random.Random(11)

    def one(self):
        reader = self.rng.randrange(len(self.tokens))
        thing = self.rng.randint(1, THINGS)
        try:
            status = requests.post(
                f"{self.base}/rest/v2/things/{thing}/flattr", headers={"Authorization": f"Bearer {self.tokens[reader]}"}, timeout=30
            ).status_code
        except requests.RequestException:
            status = 0
        self.answers.append((reader + 1, thing, status))

    def run_for(self, seconds: float):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.pool.spawn_n(self.one)
            eventlet.sleep(0.002)

    def wait(self):
        self.pool.waitall()

    def statuses(self) -> Counter:
        return Counter(status for _, _, status in self.answers)


def assert_exact(load: Load, db_url: str) -> None:
    """Every 2xx is one stored click; nothing is stored twice; only 2xx, flattr_once and 503 occur."""
    engine = create_engine(db_url)
    with engine.connect() as conn:
        stored = Counter((r.user_id, r.thing_id) for r in conn.execute(text("SELECT user_id, thing_id FROM clicks.clicks")))
    engine.dispose()
    assert all(n == 1 for n in stored.values()), "a click was stored twice"
    oks = Counter((user, thing) for user, thing, status in load.answers if status == 200)
    assert all(n == 1 for n in oks.values()), "the same click was answered ok twice"
    missing = [pair for pair in oks if pair not in stored]
    assert not missing, f"{len(missing)} clicks answered 2xx are not stored"
    unexpected = {s for _, _, s in load.answers} - {200, 403, 503}
    assert not unexpected, f"unexpected answers {unexpected}: {load.statuses()}"


def start_worker(amqp_uri: str, db_url: str, **extra) -> subprocess.Popen:
    env = dict(os.environ, AMQP_URI=amqp_uri, CLICKS_DATABASE_URL=db_url, ACCOUNTS_DATABASE_URL=db_url,
               SETTLEMENT_DATABASE_URL=db_url, PYTHONWARNINGS="ignore", LOG_LEVEL="WARNING", **{k: str(v) for k, v in extra.items()})
    return subprocess.Popen([sys.executable, "-m", "services.clicks.worker"], cwd=ROOT, env=env)


def stop_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGKILL)
    worker.wait()


def wait_until_serving(base: str, token: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = requests.post(f"{base}/rest/v2/things/{THINGS}/flattr", headers={"Authorization": f"Bearer {token}"}).status_code
        if status in (200, 403):
            return
        eventlet.sleep(0.2)
    raise AssertionError("the click path did not start serving")


def test_worker_killed_mid_batch_loses_and_doubles_nothing(database_url, amqp_uri, start_services, gateway_factory):
    tokens = seed_click_path(database_url, READERS, THINGS)
    start_services(AccountsService)
    base = gateway_factory(CLICK_TIMEOUT=15)
    # large batches that wait long: a SIGKILL lands inside one
    workers = [start_worker(amqp_uri, database_url, CLICK_BATCH_WAIT_MS=40, CLICK_BATCH_SIZE=200)]
    try:
        wait_until_serving(base, tokens[-1])
        load = Load(base, tokens[:-1])
        for _ in range(3):
            load.run_for(1.5)
            stop_worker(workers[-1])  # SIGKILL, with a batch in its hands
            workers.append(start_worker(amqp_uri, database_url, CLICK_BATCH_WAIT_MS=40, CLICK_BATCH_SIZE=200))
        load.run_for(1.5)
        load.wait()
    finally:
        for worker in workers:
            stop_worker(worker)
    statuses = load.statuses()
    assert statuses[200] > 50, statuses
    assert_exact(load, database_url)


def test_two_workers_share_the_load_and_double_nothing(database_url, amqp_uri, start_services, gateway_factory):
    tokens = seed_click_path(database_url, READERS, THINGS)
    start_services(AccountsService)
    base = gateway_factory()
    workers = [start_worker(amqp_uri, database_url, CLICK_BATCH_WAIT_MS=20) for _ in range(2)]
    try:
        wait_until_serving(base, tokens[-1])
        load = Load(base, tokens[:-1])
        load.run_for(3)
        load.wait()
        # both workers compete on the one queue (the broker's own count of its consumers)
        from services.common.click_messages import REQUEST_QUEUE, connect

        conn = connect(amqp_uri)
        consumers = conn.channel().queue_declare(REQUEST_QUEUE, passive=True).consumer_count
        conn.close()
    finally:
        for worker in workers:
            stop_worker(worker)
    assert consumers == 2
    assert load.statuses()[503] == 0
    assert_exact(load, database_url)


def test_same_reader_same_thing_from_many_connections_gets_one_ok(gateway):
    from tests.factories import create_thing, deposit, eventually, user_with_token

    _, creator = user_with_token(gateway)
    thing_id = create_thing(gateway, creator)
    _, reader = user_with_token(gateway)
    requests.put(f"{gateway}/rest/v2/user/budget", json={"amount": 300}, headers=reader)
    deposit(gateway, reader, 1000)
    assert eventually(lambda: requests.get(f"{gateway}/rest/v2/user/wallet", headers=reader).json()["has_means"])
    pool = eventlet.GreenPool(40)
    answers = list(pool.imap(lambda _: requests.post(f"{gateway}/rest/v2/things/{thing_id}/flattr", headers=reader).status_code, range(40)))
    assert Counter(answers) == {200: 1, 403: 39}


def test_sealing_under_load_loses_nothing_and_counts_nothing_twice(database_url, amqp_uri, start_services, gateway_factory, rpc):
    from services.clicks.service import ClicksService

    tokens = seed_click_path(database_url, READERS, THINGS)
    start_services(AccountsService, ClicksService)
    base = gateway_factory()
    workers = [start_worker(amqp_uri, database_url, CLICK_BATCH_WAIT_MS=10) for _ in range(2)]
    sealed = []
    try:
        wait_until_serving(base, tokens[-1])
        load = Load(base, tokens[:-1])
        for _ in range(3):
            load.run_for(1.0)
            sealed.append(rpc.clicks.close_period())
        load.run_for(1.0)
        load.wait()
    finally:
        for worker in workers:
            stop_worker(worker)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        per_period = dict(conn.execute(text("SELECT period_id, count(*) FROM clicks.clicks GROUP BY period_id")).all())
        late = conn.execute(
            text("SELECT count(*) FROM clicks.clicks c JOIN clicks.periods p ON p.id = c.period_id WHERE p.sealed_at < c.created_at")
        ).scalar()
    engine.dispose()
    # each seal returned only after its period's clicks were committed: none arrived after it
    assert late == 0
    assert {s["period"] for s in sealed} <= set(per_period)
    assert load.statuses()[503] == 0
    # within a period a reader flattrs a thing once; across periods again: ok answers per pair = periods it got through
    oks = sum(1 for *_, status in load.answers if status == 200)
    assert oks == sum(per_period.values()) - 1  # minus the click made while waiting for the path to serve


@pytest.fixture
def private_stack(private_rabbit, private_postgres, start_services, gateway_factory):
    """Accounts, a click worker and a gateway on the private broker and database."""
    db_url = private_postgres.create_database()
    for service in ("accounts", "clicks", "settlement"):
        upgrade(service, db_url)
    tokens = seed_click_path(db_url, READERS, THINGS)
    return db_url, tokens


def _supervised_accounts(amqp_uri: str, db_url: str):
    """accounts as a deployment runs it: a process of its own (``services.common.runner`` ends it
    when a container dies, e.g. when nameko could not publish an RPC reply because the broker went
    down between request and reply) under the process runner of ``make dev``, which starts it
    again. Returns a function that stops both."""
    from deploy.supervisor import Supervisor

    env = dict(os.environ, AMQP_URI=amqp_uri, ACCOUNTS_DATABASE_URL=db_url, CLICKS_DATABASE_URL=db_url,
               SETTLEMENT_DATABASE_URL=db_url, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore", LOG_LEVEL="WARNING")
    supervisor = Supervisor({"accounts": [sys.executable, "-m", "services.accounts"]}, env=env, name="test")
    supervisor.start_all()

    def keep_running():
        while True:
            supervisor.poll(0.2)
            eventlet.sleep(0)

    poller = eventlet.spawn(keep_running)

    def stop():
        poller.kill()
        supervisor.stop()

    return stop


def _private_gateway(amqp_uri, db_url):
    """Services and gateway wired to the private instances (the standard fixtures use the machine's)."""
    from eventlet import wsgi

    from services.gateway.app import create_app
    from services.gateway.clicks import ClickClient
    from services.gateway.rpc import RpcPool

    stop_accounts = _supervised_accounts(amqp_uri, db_url)
    pool, clicks = RpcPool(amqp_uri, size=4, timeout=3), ClickClient(amqp_uri, timeout=3)
    sock = eventlet.listen(("127.0.0.1", 0))
    overrides = {"SECRET_KEY": SECRET_KEY, "FLATTR_PUBLIC_URL": f"http://127.0.0.1:{sock.getsockname()[1]}", "FLATTR_RATE_LIMITS": "off"}
    app = create_app(overrides, rpc=pool, clicks=clicks)
    server = eventlet.spawn(wsgi.server, sock, app, log_output=False)

    def close():
        server.kill()
        sock.close()
        clicks.close()
        pool.close()
        stop_accounts()

    return f"http://127.0.0.1:{sock.getsockname()[1]}", close


@pytest.mark.parametrize("broken", ["rabbitmq", "postgresql"])
def test_restart_gives_503_then_recovers_exactly(broken, private_rabbit, private_postgres, private_stack):
    """The broker or the database is killed (SIGKILL) under load and started again: meanwhile only
    503s (the token check needs accounts' database, the click the worker's), then service resumes,
    and every 2xx before, during and after is stored exactly once."""
    db_url, tokens = private_stack
    base, close = _private_gateway(private_rabbit.amqp_uri, db_url)
    worker = start_worker(private_rabbit.amqp_uri, db_url)
    instance = private_rabbit if broken == "rabbitmq" else private_postgres
    try:
        wait_until_serving(base, tokens[-1])
        load = Load(base, tokens[:-1], concurrency=12)
        load.run_for(1.5)
        with instance.down(kill=True):
            during = Load(base, tokens[:-1], concurrency=6)
            during.run_for(1.0)
            during.wait()
        wait_until_serving(base, tokens[-1], timeout=60)
        load.run_for(1.5)
        load.wait()
    finally:
        stop_worker(worker)
        close()
    assert set(during.statuses()) <= {503}, during.statuses()
    assert load.statuses()[200] > 10
    load.answers.extend(during.answers)
    assert_exact(load, db_url)
