"""``make dev`` (``python -m deploy.dev``) as a user starts it, for tests and the soak.

The stack runs in its own session, as a terminal runs a job, so a caller can signal the whole
group as Ctrl-C would; the runner's ``started NAME pid=N`` lines tell which process is which.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

# the admin token the tests give `make dev` (the gateway refuses a short one)
DEV_ADMIN_TOKEN = "dev-admin-token-0123456789abcdefghijklmnop"

ROOT = Path(__file__).resolve().parent.parent
# the form deploy.dev documents for every (re)start of a child
STARTED = re.compile(r"^\s*dev \| started (?P<name>[\w-]+) pid=(?P<pid>\d+)$", re.M)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def started_pids(log_text: str) -> dict[str, int]:
    """The latest PID deploy.dev reported for each child."""
    return {m["name"]: int(m["pid"]) for m in STARTED.finditer(log_text)}


def start(env: dict, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "deploy.dev"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        log.close()  # the child has its own copy


def wait_ready(process, base: str, log_path: Path, timeout: float = 60) -> float:
    started = time.monotonic()
    while True:
        try:
            if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                return time.monotonic() - started
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or its services not answering yet
        assert process.poll() is None, Path(log_path).read_text()
        assert time.monotonic() - started < timeout, Path(log_path).read_text()
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


def kill_group(process) -> None:
    if group_alive(process.pid):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
