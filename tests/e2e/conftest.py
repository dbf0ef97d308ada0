"""``make dev`` started as a user starts it, on a private database and virtual host.

``dev_stack`` runs ``python -m deploy.dev`` in its own session (as a terminal runs a job, so the
test can signal the whole group as Ctrl-C would); a test changes its settings with
``@pytest.mark.parametrize("dev_env", [{...}], indirect=True)``.
"""
import os
import signal
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from testsupport.devstack import DEV_ADMIN_TOKEN, ROOT, group_alive
from testsupport.instances import free_port


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
        FLATTR_ADMIN_TOKEN=DEV_ADMIN_TOKEN,
        CLAIM_ALLOW_PRIVATE_ADDRESSES="on",  # the claim page is served by the test on 127.0.0.1
        CLICK_WORKER_HEARTBEAT=str(tmp_path / "click-worker.heartbeat"),
        # make dev's local SMTP server, on a port of this test's own
        SMTP_PORT=str(free_port()),
        MAIL_CATCHER_DIR=str(tmp_path / "mail"),
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
