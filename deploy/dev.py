"""``make dev``: the whole platform as local processes, their logs in one terminal.

Creates the database if needed and migrates every schema, then starts accounts, clicks, the
click worker, settlement, the payouts worker, the settlement batch runner and the gateway. Every setting comes from the caller's environment when set there;
the defaults live in ``services/common/settings.py``. Ctrl-C or SIGTERM stops every child within
3 seconds (SIGKILL after that); the children stay in this process group, so a signal to the group
reaches them too and none is left behind.
"""
from __future__ import annotations

import os
import secrets
import selectors
import signal
import subprocess
import sys
import time

from services.common import settings
from services.common.migrate import URL_KEYS, ensure_database, upgrade

PROCESSES = {
    "accounts": [sys.executable, "-m", "services.accounts"],
    "clicks": [sys.executable, "-m", "services.clicks"],
    "click-worker": [sys.executable, "-m", "services.clicks.worker"],
    "settlement": [sys.executable, "-m", "services.settlement"],
    "payouts": [sys.executable, "-m", "services.settlement.run_payouts"],
    "batch": [sys.executable, "-m", "services.settlement.run_batch"],
    "gateway": [sys.executable, "-m", "services.gateway"],
}
STOP_GRACE_SECONDS = 2.0
COLOURS = {"accounts": 32, "clicks": 33, "click-worker": 93, "settlement": 35, "payouts": 34, "batch": 91, "gateway": 36, "dev": 37}


def say(name: str, line: str) -> None:
    prefix = f"\x1b[{COLOURS[name]}m{name:>10}\x1b[0m" if sys.stdout.isatty() else f"{name:>10}"
    sys.stdout.write(f"{prefix} | {line}\n")
    sys.stdout.flush()


def main() -> int:
    env = settings.defaults_for_child()
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    if not env.get("FLATTR_SECRET_KEY"):
        # one key for every gateway worker of this run, so a session works across them
        env["FLATTR_SECRET_KEY"] = secrets.token_urlsafe(32)
    for service, key in URL_KEYS.items():
        ensure_database(env[key])
        upgrade(service, env[key])
        say("dev", f"{service}: schema ready")

    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    children: dict[str, subprocess.Popen] = {}
    selector = selectors.DefaultSelector()
    for name, argv in PROCESSES.items():
        child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        children[name] = child
        selector.register(child.stdout, selectors.EVENT_READ, name)
    say("dev", f"gateway on http://{env['GATEWAY_HOST']}:{env['GATEWAY_PORT']} (Ctrl-C stops everything)")

    exit_code = 0
    while not stopping:
        for key, _ in selector.select(timeout=0.2):
            line = key.fileobj.readline()
            if line:
                say(key.data, line.rstrip())
            else:
                selector.unregister(key.fileobj)
        for name, child in children.items():
            if child.poll() is not None:
                say("dev", f"{name} exited with {child.returncode}; stopping the rest")
                stopping, exit_code = True, 1
                break

    for child in children.values():
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for name, child in children.items():
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say("dev", f"{name} did not stop in time; killing it")
            child.kill()
            child.wait()
    say("dev", "stopped")
    return exit_code


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    sys.exit(main())
