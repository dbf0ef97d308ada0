"""Test fixtures: real RabbitMQ and PostgreSQL, isolated per test.

Where a Docker engine answers, the broker and database run in containers (testcontainers);
otherwise the machine's own services are used, named by environment variables:

- ``FLATTR_TEST_DATABASE_URL``: an admin URL of a PostgreSQL server
  (default ``postgresql+psycopg2://postgres@127.0.0.1:5432/postgres``)
- ``FLATTR_TEST_AMQP_URI``: RabbitMQ (default ``amqp://guest:guest@127.0.0.1:5672/``)
- ``FLATTR_TEST_RABBIT_API``: its management API (default ``http://guest:guest@127.0.0.1:15672/api``)
- ``FLATTR_TEST_DOCKER=off``: never try Docker.

Each test gets its own database (cloned from a migrated template, so it is cheap) and its own
RabbitMQ virtual host, so tests can run in any order and leave nothing behind.
"""
import contextlib
import os
import sys
import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")

import eventlet  # noqa: E402


def _xdist_controller() -> bool:
    """Whether this process is pytest-xdist's controller, which hands tests to worker processes
    and runs none itself. Read from the options pytest has parsed so far: this module is imported
    while pytest loads its initial conftests, with the early config in a caller's frame."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return False
    frame = sys._getframe(1)
    while frame is not None and "early_config" not in frame.f_locals:
        frame = frame.f_back
    if frame is None:
        return False
    options = frame.f_locals["early_config"].known_args_namespace
    if getattr(options, "collectonly", False) or getattr(options, "usepdb", False):
        return False  # xdist then runs in-process
    return bool(getattr(options, "numprocesses", None) or getattr(options, "tx", None))


def _keep_execnet_on_real_threads() -> None:
    """execnet (pytest-xdist's channel between a worker and the controller) reads the channel in
    an OS thread it starts before this module is imported, and builds its locks, events and queues
    afterwards from ``threading``/``queue``, looked up at each call. Once monkey-patched those are
    eventlet's: the reader thread then sets a green event that the main thread waits on in its
    own hub, which is never woken (eventlet hubs are per thread), and the worker hangs before its
    first test. Here execnet keeps the real primitives; everything else stays green."""
    try:
        from execnet import gateway_base
    except ImportError:
        return
    original = eventlet.patcher.original
    model = gateway_base.ThreadExecModel
    model.queue = property(lambda self: original("queue"))
    model.subprocess = property(lambda self: original("subprocess"))
    model.socket = property(lambda self: original("socket"))
    model.get_ident = lambda self: original("_thread").get_ident()
    model.sleep = lambda self, delay: original("time").sleep(delay)
    model.start = lambda self, func, args=(): original("_thread").start_new_thread(func, args)
    model.Lock = model.RLock = lambda self: original("threading").RLock()
    model.Event = lambda self: original("threading").Event()


# The services, their clients and the tests run green. pytest-xdist's controller runs no test and
# is left alone (its event loop waits on a queue that execnet's threads fill); its workers are
# patched like a serial run, with execnet's channel kept on real threads.
GREEN = not _xdist_controller()
if GREEN:
    eventlet.monkey_patch()
    _keep_execnet_on_real_threads()

    from psycogreen.eventlet import patch_psycopg

    patch_psycopg()

import shutil  # noqa: E402
import subprocess  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from urllib.parse import quote, urlsplit  # noqa: E402

import pytest  # noqa: E402
import requests  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from services.common.db import dispose_engines  # noqa: E402
from services.common.migrate import upgrade  # noqa: E402
from tests.factories import ADMIN_TOKEN, SECRET_KEY  # noqa: E402
from tests.databases import admin_engine as _admin_engine, cloned_database, finish_background_drops  # noqa: E402

SERVICES = ("accounts", "clicks", "settlement")
TEST_TOTP_KEY = "aFWSdwPv_BPreqwVFDYLp1PJRRRt0WaGzPVwGunk7EM="
# in the names of what the tests create on the shared servers: gw0, gw1... under pytest-xdist
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    """A wrong guess in _xdist_controller would hang the run or leave the tests unpatched: fail fast."""
    controller = session.config.pluginmanager.has_plugin("dsession")
    if controller == GREEN:
        raise pytest.UsageError(
            f"tests/conftest.py took this process for {'a test runner' if GREEN else 'the xdist controller'}, "
            f"but it {'is the xdist controller' if controller else 'runs the tests'}: run with -n 0 or -p no:xdist"
        )


def _patch_queue_consumer_for_quick_teardown() -> None:
    """Every test kills its services, and nameko's queue consumer notices only between waits on
    the broker: kombu waits up to a second for a message, and up to a second between reconnection
    attempts once the test's virtual host is gone. Tests poll every 50 ms instead, which saves a
    second per test; the services themselves run unchanged."""
    from kombu.mixins import ConsumerMixin
    from kombu.utils.limits import TokenBucket
    from nameko.messaging import QueueConsumer

    def run(self, _tokens=1, **kwargs):
        self.__dict__["restart_limit"] = TokenBucket(20)
        return ConsumerMixin.run(self, _tokens, safety_interval=0.05, **kwargs)

    QueueConsumer.run = run


_patch_queue_consumer_for_quick_teardown()


@dataclass
class Infra:
    admin_db_url: str
    amqp_base: str  # amqp://user:pass@host:port
    rabbit_api: str  # http://user:pass@host:port/api


def _docker_answers() -> bool:
    if os.environ.get("FLATTR_TEST_DOCKER", "").lower() == "off" or not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def infra():
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer
        from testcontainers.rabbitmq import RabbitMqContainer

        with PostgresContainer("postgres:15", driver="psycopg2") as pg, RabbitMqContainer("rabbitmq:3-management") as rabbit:
            rabbit.with_exposed_ports(5672, 15672)
            host = rabbit.get_container_host_ip()
            yield Infra(
                admin_db_url=pg.get_connection_url(),
                amqp_base=f"amqp://guest:guest@{host}:{rabbit.get_exposed_port(5672)}",
                rabbit_api=f"http://guest:guest@{host}:{rabbit.get_exposed_port(15672)}/api",
            )
        return
    amqp = os.environ.get("FLATTR_TEST_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")
    parts = urlsplit(amqp)
    yield Infra(
        admin_db_url=os.environ.get("FLATTR_TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"),
        amqp_base=f"{parts.scheme}://{parts.netloc}",
        rabbit_api=os.environ.get("FLATTR_TEST_RABBIT_API", "http://guest:guest@127.0.0.1:15672/api"),
    )


@pytest.fixture(scope="session")
def template_database(infra):
    """A database with every service's migrations applied, cloned by each test."""
    name = f"flattr_tmpl_{WORKER}_{uuid.uuid4().hex[:10]}"  # one per worker: no two migrate at once
    admin = _admin_engine(infra)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(infra.admin_db_url).set(database=name).render_as_string(hide_password=False)
    for service in SERVICES:
        upgrade(service, url)
    yield name
    dispose_engines()
    finish_background_drops()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@contextlib.contextmanager
def checked_database(infra, template_database):
    """A database of its own. Afterwards, every event its services wrote to an outbox must fit
    its type's contract (``services/common/contracts``), and every type must have one."""
    from testsupport.contracts import outbox_violations

    with cloned_database(infra, template_database) as url:
        yield url
        violations = outbox_violations(url)
        if violations:
            pytest.fail(f"{len(violations)} published events break their contracts:\n" + "\n".join(violations[:20]), pytrace=False)


@pytest.fixture
def database_url(infra, template_database):
    """The test's own database (``checked_database``)."""
    with checked_database(infra, template_database) as url:
        yield url


@pytest.fixture
def db(database_url):
    """A plain engine on the test's database, for assertions on what was written."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@dataclass
class VirtualHost:
    uri: str
    api: str

    def delete(self):
        requests.delete(self.api, timeout=10)


@contextlib.contextmanager
def virtual_host(infra):
    name = f"test-{WORKER}-{uuid.uuid4().hex[:12]}"
    api = f"{infra.rabbit_api}/vhosts/{quote(name, safe='')}"
    response = requests.put(api, timeout=10)
    response.raise_for_status()
    # the management API creates the vhost with the caller's permissions
    host = VirtualHost(uri=f"{infra.amqp_base}/{quote(name, safe='')}", api=api)
    try:
        yield host
    finally:
        host.delete()


@pytest.fixture
def vhost(infra):
    with virtual_host(infra) as host:
        yield host


@pytest.fixture
def amqp_uri(vhost):
    return vhost.uri


def config_for(amqp_uri: str, database_url: str) -> dict:
    return {
        "AMQP_URI": amqp_uri,
        "ACCOUNTS_DATABASE_URL": database_url,
        "CLICKS_DATABASE_URL": database_url,
        "SETTLEMENT_DATABASE_URL": database_url,
        "OUTBOX_POLL_SECONDS": "0.2",
        # claim pages are served by the tests from 127.0.0.1
        "CLAIM_ALLOW_PRIVATE_ADDRESSES": "on",
        # mail waits in accounts.mail_queue; tests of mail run an SMTP server and turn the relay on
        "MAIL_RELAY": "off",
        # seals two-factor secrets (a key for the tests only)
        "TOTP_ENCRYPTION_KEYS": TEST_TOTP_KEY,
        "serializer": "json",
    }


@pytest.fixture
def service_config(amqp_uri, database_url):
    return config_for(amqp_uri, database_url)


@contextlib.contextmanager
def service_starter(service_config, vhost):
    """Yields ``start(AccountsService, ..., **config_overrides)``, which runs them in-process on the broker."""
    from services.common.runner import ServiceGroup

    from services.common import topology

    runners = []

    def start(*classes, **overrides):
        config = dict(service_config, **overrides)
        topology.declare(config["AMQP_URI"])
        runner = ServiceGroup(config)
        for cls in classes:
            runner.add_service(cls)
        runner.start()
        runners.append(runner)
        return runner

    try:
        yield start
    finally:
        # Deleting the vhost first closes every consumer's connection at the broker, so the containers
        # die at once instead of each waiting out a poll interval (nameko's own "fast teardown").
        if runners:
            vhost.delete()
        for runner in reversed(runners):
            runner.kill()


@pytest.fixture
def start_services(service_config, vhost):
    """``start_services(AccountsService, ..., **config_overrides)`` runs them in-process on the broker."""
    with service_starter(service_config, vhost) as start:
        yield start


@contextlib.contextmanager
def click_worker_starter(service_config, vhost):
    """Yields ``start(**settings)``, which runs a click worker in a green thread and returns it."""
    from services.clicks.worker import ClickWorker

    workers = []

    def start(batch_size=100, batch_wait_ms=5):
        worker = ClickWorker(service_config["AMQP_URI"], service_config["CLICKS_DATABASE_URL"], batch_size, batch_wait_ms)
        thread = eventlet.spawn(worker.run)
        workers.append((worker, thread))
        return worker

    try:
        yield start
    finally:
        for worker, _ in workers:
            worker.stop()
        if workers:
            vhost.delete()  # closes their connections at once
        for _, thread in workers:
            with eventlet.Timeout(10, False):
                thread.wait()


@pytest.fixture
def start_click_worker(service_config, vhost):
    """``start_click_worker(**settings)`` runs a click worker in a green thread; returns it."""
    with click_worker_starter(service_config, vhost) as start:
        yield start


def every_service() -> tuple:
    from services.accounts.service import AccountsService
    from services.clicks.service import ClicksService
    from services.settlement.batch_service import SettlementBatchService
    from services.settlement.payouts import PayoutsService
    from services.settlement.service import SettlementService

    return AccountsService, ClicksService, SettlementService, PayoutsService, SettlementBatchService


@pytest.fixture
def all_services(start_services, start_click_worker):
    runner = start_services(*every_service())
    start_click_worker()
    return runner


@contextlib.contextmanager
def rpc_proxy(amqp_uri):
    from nameko.standalone.rpc import ClusterRpcProxy

    with ClusterRpcProxy({"AMQP_URI": amqp_uri, "serializer": "json"}, timeout=10) as proxy:
        yield proxy


@pytest.fixture
def rpc(amqp_uri):
    with rpc_proxy(amqp_uri) as proxy:
        yield proxy


@contextlib.contextmanager
def gateway_server_factory(amqp_uri):
    """Yields ``start(**overrides)``, which serves a gateway app over real HTTP on a free port and
    returns its base URL. The gateways share their rate limits and password throttles (in the
    local Redis, under a key prefix of their own), as a platform's replicas do."""
    from eventlet import wsgi

    from services.gateway.app import create_app
    from services.gateway.clicks import ClickClient
    from services.gateway.rpc import RpcPool

    servers = []
    key_prefix = f"flattr-test-{WORKER}-{uuid.uuid4().hex[:12]}"

    def start(**overrides):
        sock = eventlet.listen(("127.0.0.1", 0))
        overrides.setdefault("FLATTR_RATE_LIMITS", "off")
        overrides.setdefault("RATE_LIMIT_KEY_PREFIX", key_prefix)
        overrides.setdefault("SECRET_KEY", SECRET_KEY)
        overrides.setdefault("FLATTR_ADMIN_TOKEN", ADMIN_TOKEN)
        overrides.setdefault("FLATTR_PUBLIC_URL", f"http://127.0.0.1:{sock.getsockname()[1]}")
        timeout = overrides.pop("RPC_TIMEOUT", 10)
        pool = RpcPool(amqp_uri, size=4, timeout=timeout)
        clicks = ClickClient(amqp_uri, timeout=overrides.pop("CLICK_TIMEOUT", timeout))
        app = create_app(overrides, rpc=pool, clicks=clicks)
        thread = eventlet.spawn(wsgi.server, sock, app, log_output=False)
        servers.append((thread, sock, pool, clicks, app))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    try:
        yield start
    finally:
        for thread, sock, pool, clicks, app in servers:
            thread.kill()
            sock.close()
            pool.close()
            clicks.close()
            # its token-revocation listener would otherwise retry the deleted vhost every second for the rest of the run
            revocations = app.extensions.get("token_revocations")
            if revocations is not None:
                revocations.close()


@pytest.fixture
def gateway_factory(amqp_uri):
    """Serve a gateway app over real HTTP on a free port; returns its base URL (``gateway_server_factory``)."""
    with gateway_server_factory(amqp_uri) as start:
        yield start


@pytest.fixture
def gateway(all_services, gateway_factory):
    return gateway_factory()


@dataclass
class Platform:
    gateway: str
    gateway_factory: object
    db: object
    rpc: object
    amqp_uri: str


@pytest.fixture(scope="module")
def shared_platform(infra, template_database):
    """One whole platform (database, virtual host, every service, a click worker, a gateway) for
    a module whose tests cannot see each other: each makes its own users and things, none closes a
    period or counts rows it did not make. Such a module overrides ``gateway`` (and ``db``,
    ``rpc``, ``gateway_factory`` if it uses them) with this platform's; its tests then skip the
    second a platform costs to start and stop."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(checked_database(infra, template_database))
        host = stack.enter_context(virtual_host(infra))
        config = config_for(host.uri, url)
        stack.enter_context(service_starter(config, host))(*every_service())
        stack.enter_context(click_worker_starter(config, host))()
        factory = stack.enter_context(gateway_server_factory(host.uri))
        engine = create_engine(url)
        stack.callback(engine.dispose)
        proxy = stack.enter_context(rpc_proxy(host.uri))
        yield Platform(gateway=factory(), gateway_factory=factory, db=engine, rpc=proxy, amqp_uri=host.uri)


@pytest.fixture
def pages():
    """Web pages served by the test on 127.0.0.1 (``tests.pages.PageServer``), for ownership checks."""
    from tests.pages import PageServer

    server = PageServer()
    yield server
    server.close()
