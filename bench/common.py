"""What every benchmark needs: a private database and RabbitMQ virtual host, seeding, processes.

Benchmarks run against the machine's PostgreSQL and RabbitMQ (the same as ``make dev``) but in a
database and a virtual host of their own, dropped at the end, so they never touch real data.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.common.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
ADMIN_DB = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
AMQP_BASE = os.environ.get("BENCH_AMQP_BASE", "amqp://guest:guest@127.0.0.1:5672")
RABBIT_API = os.environ.get("BENCH_RABBIT_API", "http://guest:guest@127.0.0.1:15672/api")


def say(message: str) -> None:
    print(message, flush=True)


def progress(label: str, done: int, total: int) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stdout.write(f"\r  {label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        sys.stdout.write("\n")
    sys.stdout.flush()


@contextlib.contextmanager
def private_environment(name: str):
    """A migrated database and an empty virtual host for one benchmark run; both removed after."""
    suffix = uuid.uuid4().hex[:8]
    database = f"bench_{name}_{suffix}"
    vhost = f"bench-{name}-{suffix}"
    admin = create_engine(ADMIN_DB, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    url = make_url(ADMIN_DB).set(database=database).render_as_string(hide_password=False)
    api = f"{RABBIT_API}/vhosts/{quote(vhost, safe='')}"
    try:
        # inside the try: a management API that does not answer must not leave the database behind
        requests.put(api, timeout=10).raise_for_status()
        for service in ("accounts", "clicks", "settlement"):
            upgrade(service, url)
        yield url, f"{AMQP_BASE}/{quote(vhost, safe='')}"
    finally:
        try:
            requests.delete(api, timeout=10)
        except requests.RequestException:
            pass  # the API is away: the database goes all the same
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def spawn(module: str, env: dict, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 5
    for p in processes:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()


def service_env(db_url: str, amqp_uri: str, **extra) -> dict:
    env = dict(os.environ)
    env.update(
        AMQP_URI=amqp_uri,
        ACCOUNTS_DATABASE_URL=db_url,
        CLICKS_DATABASE_URL=db_url,
        SETTLEMENT_DATABASE_URL=db_url,
        PYTHONWARNINGS="ignore",
        LOG_LEVEL="WARNING",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env
