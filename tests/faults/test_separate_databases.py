"""Each service on its own database server: accounts, clicks and settlement run against three
private PostgreSQL clusters, and a whole period goes from sign-up to a settled statement and a
released escrow. A service that read another's schema would find no such schema on its server,
so the period completing (and the ledger check holding) shows that none does.

The whole of ``make dev`` runs (``python -m deploy.dev``), on a virtual host of the machine's
RabbitMQ of its own: only the databases are moved apart here.
"""
import os

import pytest
import psycopg2
import requests

from testsupport import devstack, instances
from testsupport.instances import PrivatePostgres
from tests.factories import ADMIN, ADMIN_TOKEN, bearer, deposit, eventually, ledger_check, personal_token, sign_up
from tests.pages import PageServer, claim_page

SERVICES = ("accounts", "clicks", "settlement")


@pytest.fixture(scope="module")
def servers():
    started = {service: PrivatePostgres() for service in SERVICES}
    try:
        for server in started.values():
            server.start()
        yield started
    finally:
        for server in started.values():
            server.cleanup()


@pytest.fixture
def stack(servers, vhost, tmp_path):
    port = instances.free_port()
    env = dict(
        os.environ,
        AMQP_URI=vhost.uri,
        ACCOUNTS_DATABASE_URL=servers["accounts"].url_for("flattr"),
        CLICKS_DATABASE_URL=servers["clicks"].url_for("flattr"),
        SETTLEMENT_DATABASE_URL=servers["settlement"].url_for("flattr"),
        GATEWAY_PORT=str(port),
        FLATTR_RATE_LIMITS="off",
        FLATTR_ADMIN_TOKEN=ADMIN_TOKEN,
        CLAIM_ALLOW_PRIVATE_ADDRESSES="on",
        CLICK_WORKER_HEARTBEAT=str(tmp_path / "click-worker.heartbeat"),
    )
    log = tmp_path / "dev.log"
    process = devstack.start(env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        devstack.wait_ready(process, base, log)
        yield base
    finally:
        devstack.kill_group(process)


@pytest.fixture
def pages():
    server = PageServer()
    yield server
    server.close()


def schemas_on(server: PrivatePostgres) -> set[str]:
    conn = psycopg2.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname=flattr", connect_timeout=5)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('information_schema', 'public')")
            return {row[0] for row in cursor.fetchall()}
    finally:
        conn.close()


def test_a_whole_period_with_each_service_on_its_own_database_server(servers, stack, pages):
    base = stack
    for service, server in servers.items():
        assert schemas_on(server) == {service}, f"{service}'s server holds {schemas_on(server)}"

    creator = sign_up(base)
    creator_headers = bearer(personal_token(base, creator))
    reader = sign_up(base)
    reader_headers = bearer(personal_token(base, reader))
    assert requests.put(f"{base}/rest/v2/user/budget", json={"amount": 500}, headers=reader_headers, timeout=10).status_code == 200
    assert deposit(base, reader_headers, 1000).status_code == 201
    assert eventually(lambda: requests.get(f"{base}/rest/v2/user/wallet", headers=reader_headers, timeout=10).json()["has_means"], timeout=15)

    # the creator has not joined the platform with this page yet: the reader's share waits in escrow
    page = pages.serve("/post", claim_page(owner=creator["username"]))
    flattred = requests.post(f"{base}/rest/v2/flattr", json={"url": page}, headers=reader_headers, timeout=10)
    assert flattred.status_code == 200, flattred.text
    thing_id = flattred.json()["thing"]["id"]

    period = requests.post(f"{base}/admin/periods/close", headers=ADMIN, timeout=10).json()["period"]
    settled = eventually(
        lambda: (s := requests.get(f"{base}/admin/settlements/{period}", headers=ADMIN, timeout=10).json())["state"] == "settled" and s,
        timeout=30,
    )
    assert settled, requests.get(f"{base}/admin/settlements/{period}", headers=ADMIN, timeout=10).text
    statement = requests.get(f"{base}/rest/v2/user/statements/{period}", headers=reader_headers, timeout=10).json()
    assert (statement["charged"]["amount"], statement["charged"]["fee"]) == (500, 50)
    assert [(line["thing_id"], line["amount"], line["destination"]) for line in statement["spent"]] == [(thing_id, 450, "escrow")]

    claimed = requests.post(f"{base}/rest/v2/things/{thing_id}/claim", headers=creator_headers, timeout=15)
    assert claimed.status_code == 200, claimed.text
    revenue = eventually(
        lambda: (r := requests.get(f"{base}/rest/v2/user/revenue", headers=creator_headers, timeout=10).json())["balance"] == 450 and r,
        timeout=15,
    )
    assert revenue, requests.get(f"{base}/rest/v2/user/revenue", headers=creator_headers, timeout=10).text
    wallet = requests.get(f"{base}/rest/v2/user/wallet", headers=reader_headers, timeout=10).json()
    assert wallet["balance"] == 500
    ledger_check(base)
