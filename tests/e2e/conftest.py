"""``make dev`` started as a user starts it, on a private database and virtual host.

``dev_stack`` runs ``python -m deploy.dev`` in its own session (as a terminal runs a job, so the
test can signal the whole group as Ctrl-C would); a test changes its settings with
``@pytest.mark.parametrize("dev_env", [{...}], indirect=True)``.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# the form deploy.dev documents for every (re)start of a child
STARTED = re.compile(r"^\s*dev \| started (?P<name>[\w-]+) pid=(?P<pid>\d+)$", re.M)


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


def started_pids(log_text: str) -> dict[str, int]:
    """The latest PID deploy.dev reported for each child."""
    return {m["name"]: int(m["pid"]) for m in STARTED.finditer(log_text)}


def wait_ready(process, base: str, log, timeout: float = 60) -> float:
    started = time.monotonic()
    while True:
        try:
            if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                return time.monotonic() - started
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or its services not answering yet
        assert process.poll() is None, log.read_text()
        assert time.monotonic() - started < timeout, log.read_text()
        time.sleep(0.25)


def stop_group(process, timeout: float = 10) -> float:
    """SIGTERM the stack's process group; the seconds until no process of it is left."""
    stop_sent = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)
    while time.monotonic() - stop_sent < timeout:
        process.poll()  # reap the runner itself, or its zombie would count as alive
        if not group_alive(process.pid):
            break
        time.sleep(0.02)
    return time.monotonic() - stop_sent


@pytest.fixture
def dev_env(request):
    return getattr(request, "param", {})


@pytest.fixture
def dev_stack(infra, vhost, tmp_path, dev_env):
    name = f"flattr_dev_{uuid.uuid4().hex[:12]}"
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
        CLICK_WORKER_HEARTBEAT=str(tmp_path / "click-worker.heartbeat"),
        **dev_env,
    )
    log = open(tmp_path / "dev.log", "w")
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
