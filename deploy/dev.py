"""``make dev``: the whole platform as local processes, their logs in one terminal.

Creates the database if needed and migrates every schema, then starts accounts, clicks, the
click worker, settlement, the payouts worker, the settlement batch runner and the gateway, and,
while ``SMTP_HOST`` is this machine, a local SMTP server (``mail``) that writes every mail to
``MAIL_CATCHER_DIR`` and shows it in the log (``deploy.mailcatcher``). Links in mails point at
``FLATTR_PUBLIC_URL``, which defaults to the gateway's address here.
Every setting comes from the caller's environment when set there (``AMQP_URI``, the three
``*_DATABASE_URL``, ``GATEWAY_PORT``, ``LOG_FORMAT``...); the defaults live in
``services/common/settings.py``. What the gateway must not run without is made here when not
given: a random ``FLATTR_SECRET_KEY`` and ``FLATTR_ADMIN_TOKEN`` (printed), and
``FLATTR_PUBLIC_URL`` from the gateway's host and port. Secrets given weak are refused, as the
gateway refuses them (``FLATTR_DEVELOPMENT=on`` lets them through).

Like compose or Kubernetes, it restarts a child that dies, after 0.5 s, doubled for each death
in a row up to 8 s (``deploy.supervisor``). Ctrl-C or SIGTERM stops every child within 3
seconds: each is sent SIGTERM and finishes or hands back its work; one still running after
2.8 s is killed, and says so. The children stay in this process group, so a signal to the group
reaches them too, and each is sent SIGTERM should this process die, so none is left behind.

Each line is ``NAME | TEXT``, the name right-aligned in 10 columns (coloured on a terminal). The
runner's own lines, under the name ``dev``, have a stable form that tools (the soak test) parse::

           dev | started accounts pid=1234
           dev | accounts pid=1234 exited with signal SIGKILL; restarting in 0.5 s
           dev | started accounts pid=1240
           dev | gateway on http://127.0.0.1:8000 (Ctrl-C stops everything)
           dev | clicks pid=1236 did not stop in time; killing it
           dev | stopped

i.e. ``^\\s*dev \\| started (?P<name>[\\w-]+) pid=(?P<pid>\\d+)$`` for every (re)start.
"""
from __future__ import annotations

import secrets
import signal
import sys
from pathlib import Path

from deploy.supervisor import Supervisor
from services.common import settings
from services.common.migrate import URL_KEYS, ensure_database, upgrade
from services.gateway import config as gateway_config

PROCESSES = {
    "accounts": [sys.executable, "-m", "services.accounts"],
    "clicks": [sys.executable, "-m", "services.clicks"],
    "click-worker": [sys.executable, "-m", "services.clicks.worker"],
    "settlement": [sys.executable, "-m", "services.settlement"],
    "payouts": [sys.executable, "-m", "services.settlement.run_payouts"],
    "batch": [sys.executable, "-m", "services.settlement.run_batch"],
    "gateway": [sys.executable, "-m", "services.gateway"],
}


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def processes(click_workers: int, smtp_host: str = "") -> dict[str, list[str]]:
    """The children to run: ``PROCESSES``, with ``click_workers`` click workers (``click-worker``,
    ``click-worker-2``...): competing consumers, so one commits while another fills its batch;
    and the local SMTP server while mail goes to this machine."""
    children = dict(PROCESSES)
    if smtp_host in LOCAL_HOSTS:
        children["mail"] = [sys.executable, "-m", "deploy.mailcatcher"]
    for n in range(2, click_workers + 1):
        children[f"click-worker-{n}"] = PROCESSES["click-worker"]
    return children


COLOURS = {"mail": 96, "accounts": 32, "clicks": 33, "click-worker": 93, "settlement": 35, "payouts": 34, "batch": 91, "gateway": 36, "dev": 37}


def say(name: str, line: str) -> None:
    prefix = f"\x1b[{COLOURS.get(name.rstrip('-0123456789'), 37)}m{name:>10}\x1b[0m" if sys.stdout.isatty() else f"{name:>10}"
    sys.stdout.write(f"{prefix} | {line}\n")
    sys.stdout.flush()


def fill_gateway_settings(env: dict) -> bool:
    """What the gateway must not run without, made when not given: one random secret key for
    every gateway process of this run (so a session works across them), a random admin token,
    and the public address from the gateway's host and port. Raises UnsafeSettings as the
    gateway would (weak secrets given by the caller); answers whether it made the admin token."""
    if not env.get("FLATTR_SECRET_KEY"):
        env["FLATTR_SECRET_KEY"] = secrets.token_urlsafe(32)
    made_admin_token = not env.get("FLATTR_ADMIN_TOKEN")
    if made_admin_token:
        env["FLATTR_ADMIN_TOKEN"] = secrets.token_urlsafe(32)
    if not env.get("FLATTR_PUBLIC_URL"):
        host = env["GATEWAY_HOST"] if env["GATEWAY_HOST"] not in ("0.0.0.0", "::", "") else "127.0.0.1"
        env["FLATTR_PUBLIC_URL"] = f"http://{host}:{env['GATEWAY_PORT']}"
    gateway_config.load(environ=env)
    return made_admin_token


DEV_TOTP_KEY_FILE = Path(__file__).resolve().parents[1] / "var" / "dev-totp-encryption.key"


def fill_two_factor_key(env: dict) -> None:
    """Two-factor secrets are sealed with ``TOTP_ENCRYPTION_KEYS``: when not given, a key made
    once for this checkout and kept in ``var/`` (ignored by git), so the secrets sealed in one
    run still open in the next, as the dev database keeps them."""
    if env.get("TOTP_ENCRYPTION_KEYS"):
        return
    if not DEV_TOTP_KEY_FILE.exists():
        from cryptography.fernet import Fernet

        DEV_TOTP_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
        DEV_TOTP_KEY_FILE.write_text(Fernet.generate_key().decode() + "\n")
        DEV_TOTP_KEY_FILE.chmod(0o600)
    env["TOTP_ENCRYPTION_KEYS"] = DEV_TOTP_KEY_FILE.read_text().strip()


def main() -> int:
    env = settings.defaults_for_child()
    env.setdefault("PYTHONUNBUFFERED", "1")
    try:
        made_admin_token = fill_gateway_settings(env)
    except gateway_config.UnsafeSettings as exc:  # a gateway that refuses to start would be restarted for ever
        for problem in exc.problems:
            say("dev", f"will not start: {problem}")
        return 2
    fill_two_factor_key(env)
    if made_admin_token:
        say("dev", f"admin token for this run: {env['FLATTR_ADMIN_TOKEN']}")
    for service, key in URL_KEYS.items():
        ensure_database(env[key])
        upgrade(service, env[key])
        say("dev", f"{service}: schema ready")

    stopping = []
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.append(signum))
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))

    supervisor = Supervisor(processes(int(env["CLICK_WORKERS"]), env["SMTP_HOST"]), env=env, say=say)
    supervisor.start_all()
    say("dev", f"gateway on http://{env['GATEWAY_HOST']}:{env['GATEWAY_PORT']} (Ctrl-C stops everything)")
    while not stopping:
        supervisor.poll(0.2)
    supervisor.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
