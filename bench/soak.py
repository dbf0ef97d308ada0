"""make soak: the whole platform under mixed traffic and faults, then exact accounting.

The platform runs as ``python -m deploy.dev`` runs it (every process, restarted by the runner
when one dies) on a private RabbitMQ node and a private PostgreSQL cluster
(``testsupport.instances``), so the machine's own services are never touched. For
``SOAK_SECONDS`` (default 300) client threads drive mixed traffic through the HTTP API and the
button: sign-ups, tokens, budgets, deposits (some declined, some provider errors, some repeated
with their idempotency key), things, flattrs by id and by URL, button and badge views,
subscriptions, claims of pages this process serves on 127.0.0.1, payouts, and the operator
closes a period every ``SOAK_PERIOD_SECONDS``. Meanwhile a random process of the platform is
SIGKILLed every ``SOAK_KILL_SECONDS`` or so, and RabbitMQ and PostgreSQL are restarted once each.

Afterwards (the last period closed and settled, payouts resolved) everything is checked from the
raw tables and printed as one summary line; the exit code is non-zero if any check failed:

- deadlines: every request got an answer within the gateway's deadline (a client timeout is a hang)
- flattrs: every 2xx flattr is one stored click; every stored click maps to a request sent
- deposits: every 2xx deposit is in the ledger once; nothing else is
- payouts: none paid twice, each request one payout, the ledger's paid-out sum is the provider's
- settlements: every settled period equals an independent recomputation to the cent
- ledger: ``GET /admin/ledger/check``
- counts: the public ``flattrs`` of every thing equals its stored clicks
- deadlocks: none logged by any process or by PostgreSQL

Settings (environment): SOAK_SECONDS, SOAK_WORKERS (12), SOAK_PERIOD_SECONDS (60, at most a third
of the run), SOAK_KILL_SECONDS (5), SOAK_SEED, SOAK_DEADLINE (10: RPC_TIMEOUT and CLICK_TIMEOUT),
SOAK_FAULTS (on: kills and restarts; off: traffic only), SOAK_RESTARTS (rabbitmq,postgresql), SOAK_DIR (where logs are kept; a new folder under /tmp by default),
SOAK_RUNNER (the process runner's command, default ``python -m deploy.dev``).
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import glob
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg2
import requests

from bench.processes import PLATFORM_MODULES
from testsupport.instances import PrivatePostgres, PrivateRabbit, free_port

ROOT = Path(__file__).resolve().parent.parent

SECONDS = float(os.environ.get("SOAK_SECONDS", "300"))
WORKERS = int(os.environ.get("SOAK_WORKERS", "12"))
PERIOD_SECONDS = min(float(os.environ.get("SOAK_PERIOD_SECONDS", "60")), SECONDS / 3)
KILL_SECONDS = float(os.environ.get("SOAK_KILL_SECONDS", "5"))
SEED = int(os.environ.get("SOAK_SEED", str(int(time.time()))))
DEADLINE = float(os.environ.get("SOAK_DEADLINE", "10"))
FAULTS = os.environ.get("SOAK_FAULTS", "on").lower() not in ("off", "0", "no")
# which servers are restarted once each, at about 35% and 65% of the run
RESTARTS = [r for r in os.environ.get("SOAK_RESTARTS", "rabbitmq,postgresql").replace(" ", "").split(",") if r]
# to see the checks fail: damage the private database before the checks (click, deposit,
# settlement, payout, count, deadlock) or freeze the gateway's processes mid-run (freeze)
SABOTAGE = [x for x in os.environ.get("SOAK_SABOTAGE", "").replace(" ", "").split(",") if x]
FEE_BPS = 1000
# the client's limits: a little above the gateway's deadline, so a 503 at the deadline still counts
ANSWER_LIMIT = DEADLINE + 2.0
CLIENT_TIMEOUT = (3.05, DEADLINE + 3.0)
MIN_PAYOUT = 1000
PASSWORD = "soak password 123"
SCOPES = "flattr thing extendedread wallet payout"
DEADLOCK = "deadlock detected"


def say(message: str) -> None:
    print(message, flush=True)


def _ts(value) -> float | None:
    return value.timestamp() if value is not None else None


# -- what the clients sent and got ----------------------------------------------------------------


@dataclass
class Call:
    kind: str
    started: float
    ended: float
    status: int | str  # an HTTP status, "timeout" (no answer in time: a hang) or "conn" (connection lost)
    meta: dict

    @property
    def ok(self) -> bool:
        return isinstance(self.status, int) and 200 <= self.status < 300

    @property
    def unknown(self) -> bool:
        """The outcome cannot be known from the answer: it may or may not have been carried out."""
        if self.status in ("timeout", "conn"):
            return True
        # 502 provider_error is a refused deposit, which writes nothing; any other 5xx may have been carried out
        return isinstance(self.status, int) and self.status >= 500 and not (self.kind == "deposit" and self.status == 502)


@dataclass
class User:
    name: str
    token: str | None = None
    budget: int | None = None
    things: list = field(default_factory=list)
    deposits: list = field(default_factory=list)  # (key, amount) sent


@dataclass
class Thing:
    id: int
    url: str
    owner: str | None


class Model:
    """What the clients believe about the platform: enough to make sensible requests."""

    def __init__(self, rng: random.Random):
        self.lock = threading.Lock()
        self.users: list[User] = []
        self.things: dict[int, Thing] = {}
        self.unclaimed_urls: list[str] = []
        self.calls: list[Call] = []
        self.rng = rng
        self.counter = 0

    def next_number(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter

    def pick_user(self, rng, with_token=True) -> User | None:
        with self.lock:
            users = [u for u in self.users if u.token] if with_token else list(self.users)
        return rng.choice(users) if users else None

    def pick_thing(self, rng) -> Thing | None:
        with self.lock:
            if not self.things:
                return None
            return self.things[rng.choice(list(self.things))]

    def add_thing(self, thing: Thing) -> None:
        with self.lock:
            known = self.things.get(thing.id)
            if known is None or (known.owner is None and thing.owner):
                self.things[thing.id] = thing


# -- claim pages, served by this process --------------------------------------------------------------


class Pages:
    """``/c/<user>/<n>``: a creator's page naming them; ``/u/<n>``: a page whose owner mark is set
    (in ``owners``) just before someone claims it."""

    def __init__(self):
        self.owners: dict[str, str] = {}
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                path = self.path.split("?", 1)[0]
                owner = None
                if path.startswith("/c/"):
                    owner = path.split("/")[2]
                elif path.startswith("/u/"):
                    owner = pages.owners.get(path)
                meta = f'<meta name="flattr:owner" content="{owner}">' if owner else ""
                body = f"<!doctype html><html><head><title>A soak page</title>{meta}</head><body>soak</body></html>".encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# -- the platform: the process runner and its children ------------------------------------------------


class Platform:
    def __init__(self, env: dict, run_dir: Path):
        self.env = env
        self.log_path = run_dir / "dev.log"
        self.proc: subprocess.Popen | None = None
        self.deadlock_lines: list[str] = []
        self.starts: collections.Counter = collections.Counter()  # "dev | started NAME pid=N" lines
        self.exits: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        argv = shlex.split(os.environ["SOAK_RUNNER"]) if os.environ.get("SOAK_RUNNER") else [sys.executable, "-m", "deploy.dev"]
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            start_new_session=True,  # its own process group: every child of the platform, and nothing else
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        started = re.compile(r"^\s*dev \| (?:re)?started (\S+) pid=(\d+)")
        with open(self.log_path, "w") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                if DEADLOCK in line:
                    self.deadlock_lines.append(line.rstrip())
                found = started.match(line)
                if found:
                    self.starts[found.group(1)] += 1
                elif re.match(r"^\s*dev \| .*(exited|died)", line):
                    self.exits.append(line.strip())

    def processes(self) -> dict[int, str]:
        """Live processes of the platform (the runner's process group, the runner itself excluded):
        pid -> name (``gateway-worker`` for the gateway's forked children)."""
        if self.proc is None:
            return {}
        found = {}
        stats = {}
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                with open(stat) as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(stat.split("/")[2])
            if int(fields[2]) != self.proc.pid or pid == self.proc.pid or fields[0] in ("Z", "X"):
                continue
            stats[pid] = int(fields[1])
        for pid, ppid in stats.items():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    argv = fh.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            module = argv[argv.index("-m") + 1] if "-m" in argv and argv.index("-m") + 1 < len(argv) else None
            name = PLATFORM_MODULES.get(module)
            if name is None:
                continue
            if name == "gateway" and ppid != self.proc.pid:
                name = "gateway-worker"
            found[pid] = name
        return found

    def stop(self) -> float:
        """SIGTERM to the runner, as Ctrl-C would; the seconds it took (SIGKILL to the group after 10)."""
        if self.proc is None:
            return 0.0
        began = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        took = time.monotonic() - began
        # whatever is left of the group (a gateway worker orphaned by a killed master, say)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        return took


# -- the clients ------------------------------------------------------------------------------------


class Client:
    def __init__(self, base: str, model: Model, admin_token: str, pages: Pages, rng: random.Random):
        self.base, self.model, self.admin, self.pages, self.rng = base, model, admin_token, pages, rng
        self.http = requests.Session()

    def call(self, kind: str, method: str, path: str, *, token: str | None = None, meta: dict | None = None, **kwargs) -> tuple[Call, dict | None]:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        started = time.time()
        body = None
        try:
            response = self.http.request(method, self.base + path, headers=headers, timeout=CLIENT_TIMEOUT, **kwargs)
            status = response.status_code
            if response.headers.get("Content-Type", "").startswith("application/json"):
                with contextlib.suppress(ValueError):
                    body = response.json()
        except requests.Timeout:
            status = "timeout"
        except requests.RequestException:
            status = "conn"
            self.http.close()
            time.sleep(0.2)  # the gateway process may be restarting
        record = Call(kind, started, time.time(), status, dict(meta or {}))
        if body is not None and isinstance(status, int) and status >= 400:
            record.meta["error"] = body.get("error") if isinstance(body, dict) else None
        self.model.calls.append(record)
        return record, body

    # -- actions

    def signup(self) -> None:
        name = f"soak{self.model.next_number()}x{self.rng.randrange(1000)}"
        call, _ = self.call("signup", "POST", "/rest/v2/users", json={"username": name, "email": f"{name}@soak.example", "password": PASSWORD}, meta={"user": name})
        if call.status in (201, 409) or call.unknown:
            user = User(name)
            with self.model.lock:
                self.model.users.append(user)
            self.get_token(user)
            if user.token:
                self.set_budget(user)
                self.deposit(user)

    def get_token(self, user: User) -> None:
        call, body = self.call("token", "POST", "/rest/v2/user/tokens", auth=(user.name, PASSWORD), data={"scope": SCOPES}, meta={"user": user.name})
        if call.status == 201 and body:
            user.token = body["access_token"]
        elif call.status == 401:  # a sign-up whose answer was lost, and which did not happen
            with self.model.lock:
                with contextlib.suppress(ValueError):
                    self.model.users.remove(user)

    def set_budget(self, user: User) -> None:
        amount = self.rng.choice([200, 300, 500, 700, 1000, 1500, 2000])
        call, _ = self.call("budget", "PUT", "/rest/v2/user/budget", token=user.token, json={"amount": amount}, meta={"user": user.name, "amount": amount})
        if call.ok:
            user.budget = amount

    def deposit(self, user: User) -> None:
        if user.deposits and self.rng.random() < 0.15:
            key, amount = self.rng.choice(user.deposits)  # the same request again
        else:
            base = (user.budget or 1000) * self.rng.choice([1, 2, 3]) + self.rng.randrange(0, 500)
            roll = self.rng.random()
            if roll < 0.10:
                amount = base // 100 * 100 + 13  # the sandbox declines it: 402
            elif roll < 0.15:
                amount = base // 100 * 100 + 66  # the sandbox fails: 502
            else:
                amount = base
                if amount % 100 in (13, 66):
                    amount += 1
            key = uuid.uuid4().hex
            user.deposits.append((key, amount))
        self.call("deposit", "POST", "/rest/v2/user/deposits", token=user.token, json={"amount": amount, "idempotency_key": key},
                  meta={"user": user.name, "key": key, "amount": amount})
        # the answer is checked against the ledger at the end

    def create_thing(self, user: User) -> None:
        n = self.model.next_number()
        url = self.pages.url(f"/c/{user.name}/{n}")
        call, body = self.call("thing", "POST", "/rest/v2/things", token=user.token, json={"url": url, "title": f"Soak thing {n}"}, meta={"user": user.name, "url": url})
        if call.status == 201 and body:
            self.model.add_thing(Thing(body["id"], url, user.name))
            # the page names its creator: claiming it proves it theirs, so its shares become revenue
            self.call("claim", "POST", f"/rest/v2/things/{body['id']}/claim", token=user.token, meta={"user": user.name, "thing": body["id"], "honest": True})

    def flattr_id(self, user: User) -> None:
        thing = self.model.pick_thing(self.rng)
        if thing is None:
            return
        self.call("flattr", "POST", f"/rest/v2/things/{thing.id}/flattr", token=user.token, meta={"user": user.name, "thing": thing.id})

    def flattr_url(self, user: User) -> None:
        with self.model.lock:
            registered = [t.url for t in self.model.things.values()]
        if registered and self.rng.random() < 0.3:
            url = self.rng.choice(registered)
        else:
            url = self.pages.url(f"/u/{self.rng.randrange(60)}")
        call, body = self.call("flattr", "POST", "/rest/v2/flattr", token=user.token, json={"url": url}, meta={"user": user.name, "url": url})
        if call.ok and body and body.get("thing"):
            self.model.add_thing(Thing(body["thing"]["id"], url, None if "/u/" in url else url.split("/")[4]))

    def view_button(self, badge: bool) -> None:
        thing = self.model.pick_thing(self.rng)
        if thing is None:
            return
        self.call("badge" if badge else "button", "GET", f"/button/{thing.id}{'.svg' if badge else ''}", meta={"thing": thing.id})

    def read_thing(self) -> None:
        thing = self.model.pick_thing(self.rng)
        if thing is not None:
            self.call("read", "GET", f"/rest/v2/things/{thing.id}", meta={"thing": thing.id})

    def wallet(self, user: User) -> None:
        self.call("read", "GET", "/rest/v2/user/wallet", token=user.token, meta={"user": user.name})

    def subscribe(self, user: User) -> None:
        thing = self.model.pick_thing(self.rng)
        if thing is None or thing.owner == user.name:
            return
        months = self.rng.choice([None, 3, 6])
        payload = {"months": months} if months else {}
        self.call("subscribe", "POST", f"/rest/v2/things/{thing.id}/subscriptions", token=user.token, json=payload,
                  meta={"user": user.name, "thing": thing.id})

    def claim(self, user: User) -> None:
        with self.model.lock:
            unclaimed = [t for t in self.model.things.values() if t.owner is None]
        if not unclaimed:
            return
        thing = self.rng.choice(unclaimed)
        path = thing.url.split(str(self.pages.port), 1)[1]
        honest = self.rng.random() < 0.8
        self.pages.owners[path] = user.name if honest else "somebody-else"
        call, _ = self.call("claim", "POST", f"/rest/v2/things/{thing.id}/claim", token=user.token, meta={"user": user.name, "thing": thing.id, "honest": honest})
        if call.ok:
            with self.model.lock:
                thing.owner = user.name

    def payout(self, user: User) -> None:
        call, body = self.call("revenue", "GET", "/rest/v2/user/revenue", token=user.token, meta={"user": user.name})
        if not call.ok or not body or body.get("balance", 0) < MIN_PAYOUT:
            return
        amount = self.rng.randint(MIN_PAYOUT, body["balance"])
        if amount % 100 == 66:
            amount += 1  # a provider error would keep the payout requested for a day
        if self.rng.random() < 0.1:
            amount = max(MIN_PAYOUT + 13, amount // 100 * 100 + 13)  # declined: the money goes back
            if amount > body["balance"]:
                return
        key = uuid.uuid4().hex
        for _ in range(2 if self.rng.random() < 0.3 else 1):  # sometimes the same request twice
            self.call("payout", "POST", "/rest/v2/user/payouts", token=user.token, json={"amount": amount, "idempotency_key": key},
                      meta={"user": user.name, "key": key, "amount": amount})

    def act(self) -> None:
        with self.model.lock:
            users = len(self.model.users)
        if users < 6 or (users < 12 + SECONDS / 8 and self.rng.random() < 0.03):
            return self.signup()
        user = self.model.pick_user(self.rng, with_token=False)
        if user is None:
            return
        if user.token is None:  # its sign-up or token request got no answer: ask again
            return self.get_token(user)
        actions = [
            (30, self.flattr_id), (10, self.flattr_url), (8, lambda u: self.view_button(False)), (8, lambda u: self.view_button(True)),
            (4, lambda u: self.read_thing()), (4, self.wallet), (7, self.deposit), (3, self.set_budget), (2, self.create_thing),
            (2, self.subscribe), (0.5, self.claim), (3, self.payout),
        ]
        if len(self.model.things) < 5:
            actions.append((40, self.create_thing))
        weights = [w for w, _ in actions]
        self.rng.choices([a for _, a in actions], weights)[0](user)


# -- the run ------------------------------------------------------------------------------------------


class Soak:
    def __init__(self):
        self.rng = random.Random(SEED)
        self.run_dir = Path(os.environ.get("SOAK_DIR") or tempfile.mkdtemp(prefix="flattr-soak-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.admin_token = "soak-admin-" + uuid.uuid4().hex
        self.model = Model(self.rng)
        self.kills: collections.Counter = collections.Counter()
        self.infra_restarts: list[str] = []
        self.closes: list[Call] = []
        self.stop_traffic = threading.Event()
        self.failures: list[str] = []
        self.findings: list[str] = []  # worth reading, not failures
        self.started = 0.0
        self.restart_waits: list[float] = []

    # -- helpers
    def sql(self, query: str, params=None) -> list[tuple]:
        conn = psycopg2.connect(self.postgres.dsn.replace("dbname=postgres", "dbname=soak"), connect_timeout=10)
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall()
        finally:
            conn.close()

    def admin(self, method: str, path: str) -> requests.Response:
        return requests.request(method, self.base + path, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=CLIENT_TIMEOUT)

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.base + "/readyz", timeout=5).status_code == 200:
                    return True
            time.sleep(0.5)
        return False

    def fail(self, check: str, message: str) -> None:
        self.failures.append(f"{check}: {message}")

    # -- threads
    def client_loop(self, index: int) -> None:
        client = Client(self.base, self.model, self.admin_token, self.pages, random.Random(SEED * 100 + index))
        while not self.stop_traffic.is_set():
            try:
                client.act()
            except Exception as exc:  # a bug of the soak itself: say so, keep going
                self.findings.append(f"client {index}: {type(exc).__name__}: {exc}")
            time.sleep(client.rng.uniform(0.0, 0.05))

    def closer_loop(self) -> None:
        while not self.stop_traffic.wait(PERIOD_SECONDS):
            self.close_period()

    def close_period(self) -> Call:
        started = time.time()
        try:
            response = self.admin("POST", "/admin/periods/close")
            status, body = response.status_code, (response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {})
        except requests.Timeout:
            status, body = "timeout", {}
        except requests.RequestException:
            status, body = "conn", {}
        call = Call("close", started, time.time(), status, {"period": body.get("period"), "next": body.get("next_period")})
        self.closes.append(call)
        self.model.calls.append(call)
        return call

    def chaos_loop(self) -> None:
        rabbit_at = SECONDS * 0.35 if "rabbitmq" in RESTARTS else None
        postgres_at = SECONDS * 0.65 if "postgresql" in RESTARTS else None
        while not self.stop_traffic.wait(self.rng.uniform(0.5, 1.5) * KILL_SECONDS):
            elapsed = time.monotonic() - self.started
            if rabbit_at is not None and elapsed >= rabbit_at:
                rabbit_at = None
                self.restart_infra("rabbitmq", lambda: self.rabbit.restart())
                continue
            if postgres_at is not None and elapsed >= postgres_at:
                postgres_at = None
                self.restart_infra("postgresql", lambda: self.postgres.restart(kill=True))  # a crash: recovery on restart
                continue
            processes = self.platform.processes()
            if not processes:
                continue
            pid = self.rng.choice(sorted(processes))
            name = processes[pid]
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                self.kills[name] += 1
                threading.Thread(target=self._watch_restart, args=(name, set(processes)), daemon=True).start()

    def _watch_restart(self, name: str, before: set[int]) -> None:
        began = time.monotonic()
        while time.monotonic() - began < 60:
            if any(n == name and pid not in before for pid, n in self.platform.processes().items()):
                self.restart_waits.append(time.monotonic() - began)
                return
            time.sleep(0.1)
        self.findings.append(f"{name} was not running again 60 s after it was killed")

    def restart_infra(self, name: str, restart) -> None:
        began = time.monotonic()
        restart()
        self.infra_restarts.append(f"{name} {time.monotonic() - began:.1f}s")

    def progress_loop(self) -> None:
        while not self.stop_traffic.wait(5):
            say(self.progress_line())

    def progress_line(self) -> str:
        calls = list(self.model.calls)
        mix = collections.Counter(self.status_class(c) for c in calls)
        rate = len(calls) / max(1e-9, time.monotonic() - self.started)
        return (
            f"soak {time.monotonic() - self.started:5.0f}s requests={len(calls)} ({rate:.0f}/s) "
            + " ".join(f"{k}={v}" for k, v in sorted(mix.items()))
            + f" kills={sum(self.kills.values())} infra={len(self.infra_restarts)} closes={sum(1 for c in self.closes if c.ok)}"
        )

    @staticmethod
    def status_class(call: Call) -> str:
        if isinstance(call.status, int):
            return f"{call.status // 100}xx" if call.status != 503 else "503"
        return call.status

    # -- the whole run
    def run(self) -> int:
        say(f"soak: {SECONDS:.0f}s, {WORKERS} clients, a period every {PERIOD_SECONDS:.0f}s, a kill every ~{KILL_SECONDS:.0f}s, seed {SEED}; logs in {self.run_dir}")
        self.rabbit, self.postgres = PrivateRabbit(), PrivatePostgres()
        self.pages = Pages()
        self.platform = None
        try:
            self.rabbit.start()
            self.postgres.start()
            say(f"private RabbitMQ on :{self.rabbit.port}, PostgreSQL on :{self.postgres.port}")
            db_url = self.postgres.url_for("soak")
            port = free_port()
            self.base = f"http://127.0.0.1:{port}"
            env = dict(
                os.environ,
                AMQP_URI=self.rabbit.amqp_uri,
                ACCOUNTS_DATABASE_URL=db_url,
                CLICKS_DATABASE_URL=db_url,
                SETTLEMENT_DATABASE_URL=db_url,
                GATEWAY_PORT=str(port),
                SMTP_PORT=str(free_port()),  # make dev's local SMTP server, on a port of its own
                MAIL_CATCHER_DIR=str(self.run_dir / "mail"),
                FLATTR_ADMIN_TOKEN=self.admin_token,
                FLATTR_RATE_LIMITS="off",
                CLAIM_ALLOW_PRIVATE_ADDRESSES="on",
                RPC_TIMEOUT=f"{DEADLINE:g}",
                CLICK_TIMEOUT=f"{DEADLINE:g}",
                SETTLEMENT_FEE_BPS=str(FEE_BPS),
                SETTLEMENT_NO_CLICKS_POLICY="rollover",
                PYTHONWARNINGS="ignore",
            )
            self.platform = Platform(env, self.run_dir)
            self.platform.start()
            if not self.wait_ready(120):
                self.fail("start", "the platform was not ready within 120 s")
                return self.finish()
            say(f"platform ready: {len(self.platform.processes())} processes, gateway on {self.base}")
            self.drive()
            self.settle_down()
            self.sabotage()
            self.check()
        except Exception as exc:
            self.fail("soak", f"{type(exc).__name__}: {exc}")
            import traceback

            traceback.print_exc()
        return self.finish()

    def drive(self) -> None:
        self.started = time.monotonic()
        threads = [threading.Thread(target=self.client_loop, args=(i,), daemon=True) for i in range(WORKERS)]
        threads.append(threading.Thread(target=self.closer_loop, daemon=True))
        threads.append(threading.Thread(target=self.progress_loop, daemon=True))
        if FAULTS:
            threads.append(threading.Thread(target=self.chaos_loop, daemon=True))
        if "freeze" in SABOTAGE:
            threads.append(threading.Thread(target=self.freeze_gateway, daemon=True))
        for t in threads:
            t.start()
        time.sleep(SECONDS)
        self.stop_traffic.set()
        for t in threads:
            t.join(ANSWER_LIMIT + 120)  # the chaos thread may be in the middle of restarting a server
        say(self.progress_line())
        say("traffic stopped; waiting for the platform to settle")

    def settle_down(self) -> None:
        """Everything up, the last period closed and settled, payouts resolved, counts caught up."""
        for server in (self.rabbit, self.postgres):
            if not server.running:
                server.start()
        if not self.wait_ready(60):
            self.fail("settle", "the platform was not ready 60 s after the traffic stopped")
        deadline = time.monotonic() + 60
        while not self.close_period().ok:
            if time.monotonic() > deadline:
                self.fail("settle", "the last period could not be closed in 60 s")
                break
            time.sleep(2)
        began = time.monotonic()
        while time.monotonic() - began < 130:  # a failed settlement is tried again once a minute
            pending = self.sql(
                "SELECT p.id, coalesce(s.state, 'no settlement') FROM clicks.periods p LEFT JOIN settlement.settlements s ON s.period = p.id "
                "WHERE p.state = 'sealed' AND coalesce(s.state, '') <> 'settled' ORDER BY p.seq"
            )
            requested = self.sql("SELECT count(*) FROM settlement.payouts WHERE state = 'requested'")[0][0]
            if not pending and not requested:
                break
            time.sleep(2)
        else:
            if pending:
                self.fail("settlements", f"not settled 130 s after the last close: {pending}")
            if requested:
                self.fail("payouts", f"{requested} payouts still requested 130 s after the last close")
        say(f"settled and payouts resolved {time.monotonic() - began:.0f}s after the last close")

    # -- sabotage: proof that the checks can fail --------------------------------------------------

    def freeze_gateway(self) -> None:
        if self.stop_traffic.wait(SECONDS / 2):
            return
        frozen = [pid for pid, name in self.platform.processes().items() if name == "gateway-worker"]
        say(f"sabotage: SIGSTOP of the gateway's processes {frozen} for {DEADLINE + 5:g} s")
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(DEADLINE + 5)
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def sabotage(self) -> None:
        if not SABOTAGE:
            return
        conn = psycopg2.connect(self.postgres.dsn.replace("dbname=postgres", "dbname=soak"))
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SET session_replication_role = replica")  # past the ledger's triggers, as a careless operator
        if "click" in SABOTAGE:
            cur.execute("DELETE FROM clicks.clicks WHERE id = (SELECT max(id) FROM clicks.clicks WHERE source = 'api')")
        if "count" in SABOTAGE:
            cur.execute("UPDATE clicks.thing_counters SET flattrs = flattrs + 1 WHERE thing_id = (SELECT min(thing_id) FROM clicks.thing_counters)")
        if "settlement" in SABOTAGE:
            cur.execute("UPDATE settlement.credits SET amount = amount + 1 WHERE (period, thing_id) = (SELECT period, thing_id FROM settlement.credits LIMIT 1)")
        if "deposit" in SABOTAGE or "payout" in SABOTAGE:
            cur.execute("SELECT id FROM settlement.ledger_accounts WHERE kind = 'clearing'")
            clearing = cur.fetchone()[0]
        if "deposit" in SABOTAGE:
            cur.execute("SELECT id, owner_id FROM settlement.ledger_accounts WHERE kind = 'wallet' LIMIT 1")
            wallet, owner = cur.fetchone()
            cur.execute("INSERT INTO settlement.transactions (kind, idempotency_key) VALUES ('deposit', %s) RETURNING id", (f"deposit:{owner}:forged",))
            tx = cur.fetchone()[0]
            cur.execute("INSERT INTO settlement.postings (transaction_id, account_id, amount) VALUES (%s, %s, -100), (%s, %s, 100)", (tx, clearing, tx, wallet))
        if "payout" in SABOTAGE:
            cur.execute("SELECT id, amount FROM settlement.payouts WHERE state = 'completed' LIMIT 1")
            payout = cur.fetchone()
            if payout:
                cur.execute("INSERT INTO settlement.transactions (kind, idempotency_key) VALUES ('payout_failed', %s)", (f"payout:{payout[0]}:return",))
        if "deadlock" in SABOTAGE:
            cur.execute("CREATE TABLE public.soak_sabotage (id int PRIMARY KEY); INSERT INTO public.soak_sabotage VALUES (1), (2)")
            other = psycopg2.connect(self.postgres.dsn.replace("dbname=postgres", "dbname=soak"))
            first, second = conn.cursor(), other.cursor()
            conn.autocommit = False
            first.execute("UPDATE public.soak_sabotage SET id = id WHERE id = 1")
            second.execute("UPDATE public.soak_sabotage SET id = id WHERE id = 2")

            def wait_for_second():
                with contextlib.suppress(psycopg2.Error):
                    first.execute("UPDATE public.soak_sabotage SET id = id WHERE id = 2")

            blocked = threading.Thread(target=wait_for_second)
            blocked.start()
            time.sleep(0.5)
            with contextlib.suppress(psycopg2.Error):
                second.execute("UPDATE public.soak_sabotage SET id = id WHERE id = 1")
            blocked.join(5)
            with contextlib.suppress(psycopg2.Error):
                conn.rollback()
            other.close()
        conn.close()
        say(f"sabotage: {', '.join(SABOTAGE)}")

    # -- the checks ------------------------------------------------------------------------------

    def check(self) -> None:
        self.summary: dict[str, str] = {}
        users = dict(self.sql("SELECT username, id FROM accounts.users"))
        self.user_ids = users
        for name, check in (
            ("deadlines", self.check_deadlines),
            ("flattrs", self.check_flattrs),
            ("deposits", self.check_deposits),
            ("payouts", self.check_payouts),
            ("settlements", self.check_settlements),
            ("ledger", self.check_ledger),
            ("counts", self.check_counts),
            ("deadlocks", self.check_deadlocks),
        ):
            before = len(self.failures)
            try:
                figures = check()
            except Exception as exc:
                import traceback

                traceback.print_exc()
                self.fail(name, f"the check itself failed: {type(exc).__name__}: {exc}")
                figures = ""
            self.summary[name] = ("ok" if len(self.failures) == before else "FAIL") + (f" ({figures})" if figures else "")

    def check_deadlines(self) -> str:
        calls = [c for c in self.model.calls]
        hangs = [c for c in calls if c.status == "timeout"]
        late = [c for c in calls if c.status != "timeout" and c.ended - c.started > ANSWER_LIMIT]
        conn = [c for c in calls if c.status == "conn"]
        slowest = max((c.ended - c.started for c in calls if c.status not in ("timeout", "conn")), default=0.0)
        for c in hangs[:5]:
            self.fail("deadlines", f"no answer in {CLIENT_TIMEOUT[1]:g} s: {c.kind} {c.meta} at +{c.started - self.wall_start():.0f}s")
        for c in late[:5]:
            self.fail("deadlines", f"answered after {c.ended - c.started:.1f} s: {c.kind} {c.status} {c.meta}")
        if len(hangs) > 5 or len(late) > 5:
            self.fail("deadlines", f"{len(hangs)} hangs and {len(late)} late answers in all")
        over = sum(1 for c in calls if c.status not in ("timeout", "conn") and c.ended - c.started > DEADLINE)
        return f"{len(hangs)} hung, {len(late)} late, {over} over {DEADLINE:g}s, {len(conn)} connections lost, slowest {slowest:.1f}s"

    def wall_start(self) -> float:
        return time.time() - (time.monotonic() - self.started)

    def check_flattrs(self) -> str:
        urls = {url: tid for tid, url in self.sql("SELECT id, url FROM accounts.things")}
        asked = collections.defaultdict(lambda: [0, 0])  # (user id, thing id) -> [2xx, unknown]
        ok_calls = []
        for c in self.model.calls:
            if c.kind != "flattr":
                continue
            uid = self.user_ids.get(c.meta["user"])
            tid = c.meta.get("thing") if "thing" in c.meta else urls.get(c.meta["url"])
            if uid is None or tid is None:
                if c.ok:
                    self.fail("flattrs", f"a 2xx flattr names no stored user or thing: {c.meta}")
                continue
            if c.ok:
                asked[(uid, tid)][0] += 1
                ok_calls.append((uid, tid, c))
            elif c.unknown:
                asked[(uid, tid)][1] += 1
        subscribed = set()
        for c in self.model.calls:
            if c.kind == "subscribe" and (c.ok or c.unknown or c.status == 403):
                subscribed.add((self.user_ids.get(c.meta["user"]), c.meta["thing"]))
        stored = collections.Counter()
        stored_in = set()
        for uid, tid, period, source in self.sql("SELECT user_id, thing_id, period_id, source FROM clicks.clicks"):
            stored_in.add((uid, tid, period))
            if source == "subscription":
                if (uid, tid) not in subscribed:
                    self.fail("flattrs", f"a subscription click of reader {uid} on thing {tid} in {period}, with no subscription asked for")
                continue
            stored[(uid, tid)] += 1
        missing = doubled = unasked = 0
        for pair in set(asked) | set(stored):
            oks, unknown = asked.get(pair, (0, 0))
            n = stored.get(pair, 0)
            if n < oks:
                missing += oks - n
                if missing <= 5:
                    self.fail("flattrs", f"reader {pair[0]} on thing {pair[1]}: {oks} answered 2xx, {n} stored")
            elif n > oks + unknown:
                unasked += n - oks - unknown
                if unasked <= 5:
                    self.fail("flattrs", f"reader {pair[0]} on thing {pair[1]}: {n} stored, but only {oks} 2xx and {unknown} unknown answers")
        # a 2xx sent and answered well inside a period is a click of that period
        periods = self.sql("SELECT id, starts_at, sealed_at FROM clicks.periods")
        misplaced = 0
        for uid, tid, c in ok_calls:
            for pid, starts, sealed in periods:
                if c.started > starts.timestamp() + 0.05 and (sealed is None or c.ended < sealed.timestamp() - 0.05):
                    if (uid, tid, pid) not in stored_in:
                        misplaced += 1
                        if misplaced <= 5:
                            self.fail("flattrs", f"reader {uid} on thing {tid}: 2xx inside period {pid}, no click stored in it")
        doubled = self.sql(
            "SELECT count(*) FROM (SELECT 1 FROM clicks.clicks GROUP BY period_id, user_id, thing_id HAVING count(*) > 1) d"
        )[0][0]
        if doubled:
            self.fail("flattrs", f"{doubled} clicks stored twice in one period")
        if missing > 5 or unasked > 5 or misplaced > 5:
            self.fail("flattrs", f"in all: {missing} 2xx not stored, {unasked} stored without a request, {misplaced} in the wrong period")
        n_ok = sum(v[0] for v in asked.values())
        n_unknown = sum(v[1] for v in asked.values())
        total_stored = sum(stored.values())
        return f"{n_ok} 2xx, {total_stored} stored, {total_stored - n_ok} of {n_unknown} unknown stored, {len(stored_in) - total_stored} by subscription"

    def check_deposits(self) -> str:
        rows = self.sql(
            "SELECT d.user_id, d.idempotency_key, d.amount, d.state, d.transaction_id, d.id, "
            "(SELECT count(*) FROM settlement.transactions t WHERE t.idempotency_key = 'deposit:' || d.user_id || ':' || d.idempotency_key), "
            "(SELECT coalesce(sum(p.amount), 0) FROM settlement.postings p JOIN settlement.ledger_accounts a ON a.id = p.account_id "
            " WHERE p.transaction_id = d.transaction_id AND a.kind = 'wallet' AND a.owner_id = d.user_id) "
            "FROM settlement.deposits d"
        )
        stored = {(r[0], r[1]): r for r in rows}
        asked = collections.defaultdict(list)
        for c in self.model.calls:
            if c.kind == "deposit":
                asked[(self.user_ids.get(c.meta["user"]), c.meta["key"])].append(c)
        statuses = collections.Counter()
        for (uid, key), calls in asked.items():
            row = stored.get((uid, key))
            for c in calls:
                statuses[self.status_class(c) if c.status not in (402, 502) else str(c.status)] += 1
            if any(c.ok for c in calls):
                if row is None or row[3] != "completed":
                    self.fail("deposits", f"a 2xx deposit of {calls[0].meta['amount']} (user {uid}, key {key}) is not completed in the ledger: {row}")
                    continue
                if row[2] != calls[0].meta["amount"] or row[6] != 1 or row[7] != row[2]:
                    self.fail("deposits", f"deposit {row[5]}: amount {row[2]} asked {calls[0].meta['amount']}, {row[6]} ledger transactions, {row[7]} to the wallet")
            elif row is not None and row[3] == "completed" and not any(c.unknown for c in calls):
                self.fail("deposits", f"deposit {row[5]} of {row[2]} is in the ledger, but every request for it was refused: {[c.status for c in calls]}")
            if any(c.status == 402 for c in calls) and row is not None and row[3] == "completed":
                self.fail("deposits", f"deposit {row[5]} was declined (402) but is in the ledger")
        for (uid, key), row in stored.items():
            if (uid, key) not in asked:
                self.fail("deposits", f"deposit {row[5]} ({row[2]} for user {uid}) was never asked for")
        completed = sum(1 for r in rows if r[3] == "completed")
        tx = self.sql("SELECT count(*) FROM settlement.transactions WHERE kind = 'deposit'")[0][0]
        if tx != completed:
            self.fail("deposits", f"{tx} deposit transactions in the ledger for {completed} completed deposits")
        return f"{completed} in the ledger; answers " + " ".join(f"{k}={v}" for k, v in sorted(statuses.items()))

    def check_payouts(self) -> str:
        rows = self.sql(
            "SELECT p.id, p.user_id, p.idempotency_key, p.amount, p.state, "
            "(SELECT count(*) FROM settlement.transactions t WHERE t.idempotency_key = 'payout:' || p.id || ':complete'), "
            "(SELECT count(*) FROM settlement.transactions t WHERE t.idempotency_key = 'payout:' || p.id || ':return'), "
            "(SELECT count(*) FROM settlement.sandbox_payments s WHERE s.reference = 'payout-' || p.id AND s.outcome = 'approved') "
            "FROM settlement.payouts p"
        )
        by_key = {(r[1], r[2]): r for r in rows}
        for pid, uid, key, amount, state, completes, returns, paid in rows:
            if completes + returns > 1 or paid > 1:
                self.fail("payouts", f"payout {pid} resolved {completes} + {returns} times, paid {paid} times by the provider")
            if state == "completed" and (completes != 1 or paid != 1):
                self.fail("payouts", f"payout {pid} completed with {completes} ledger completions and {paid} provider payments")
            if state == "failed" and (returns != 1 or paid):
                self.fail("payouts", f"payout {pid} failed but the provider paid it {paid} times ({returns} returns)")
        asked = collections.defaultdict(list)
        for c in self.model.calls:
            if c.kind == "payout":
                asked[(self.user_ids.get(c.meta["user"]), c.meta["key"])].append(c)
        for pair, calls in asked.items():
            row = by_key.get(pair)
            if any(c.ok for c in calls) and (row is None or row[3] != calls[0].meta["amount"]):
                self.fail("payouts", f"a 2xx payout request {calls[0].meta} is not one payout of that amount: {row}")
        for pair, row in by_key.items():
            if pair not in asked:
                self.fail("payouts", f"payout {row[0]} was never asked for")
        paid_ledger = self.sql(
            "SELECT coalesce(sum(p.amount), 0) FROM settlement.postings p JOIN settlement.transactions t ON t.id = p.transaction_id "
            "JOIN settlement.ledger_accounts a ON a.id = p.account_id WHERE t.kind = 'payout_completed' AND a.kind = 'clearing'"
        )[0][0]
        paid_provider = self.sql(
            "SELECT coalesce(sum(s.amount), 0) FROM settlement.sandbox_payments s WHERE s.direction = 'payout' AND s.outcome = 'approved'"
        )[0][0]
        if paid_ledger != paid_provider:
            self.fail("payouts", f"the ledger paid out {paid_ledger}, the provider {paid_provider}")
        states = collections.Counter(r[4] for r in rows)
        return " ".join(f"{k}={v}" for k, v in sorted(states.items())) + f", {paid_provider} cents paid out"

    def check_settlements(self) -> str:
        """Every settled period, recomputed from the stored clicks, budgets and wallets."""
        settled = self.sql(
            "SELECT s.period, s.fee_bps, s.policy, p.sealed_at, s.transaction_id, t.created_at, s.settled_at, s.totals "
            "FROM settlement.settlements s JOIN clicks.periods p ON p.id = s.period "
            "JOIN settlement.transactions t ON t.id = s.transaction_id WHERE s.state = 'settled' ORDER BY p.seq"
        )
        # budgets as accounts recorded every change (its outbox keeps each budget.changed it wrote)
        budget_history = collections.defaultdict(list)
        for uid, amount, occurred in self.sql(
            "SELECT (body->'data'->>'user_id')::bigint, (body->'data'->>'budget')::bigint, body->>'occurred_at' "
            "FROM accounts.outbox WHERE event_type = 'budget.changed'"
        ):
            budget_history[uid].append((datetime.fromisoformat(occurred), amount))
        # every posting to a wallet, in transaction order
        wallet_moves = collections.defaultdict(list)
        for owner, tid, created, amount in self.sql(
            "SELECT a.owner_id, t.id, t.created_at, sum(p.amount) FROM settlement.postings p JOIN settlement.ledger_accounts a ON a.id = p.account_id "
            "JOIN settlement.transactions t ON t.id = p.transaction_id WHERE a.kind = 'wallet' GROUP BY a.owner_id, t.id, t.created_at ORDER BY t.id"
        ):
            wallet_moves[owner].append((tid, created, int(amount)))
        # only a verified owner is paid; an unverified one's shares wait in escrow like an unclaimed thing's
        owners_now = dict(self.sql("SELECT id, owner_id FROM accounts.things WHERE owner_verified"))
        account_of = {(k, o): i for i, k, o in self.sql("SELECT id, kind, owner_id FROM settlement.ledger_accounts")}
        readers = charged_total = concurrent = 0
        for period, fee_bps, policy, sealed_at, tx, tx_created, settled_at, totals in settled:
            if fee_bps != FEE_BPS or policy != "rollover":
                self.fail("settlements", f"{period} settled with fee {fee_bps} bps and policy {policy}, the platform was set to {FEE_BPS} and rollover")
            clicks = collections.defaultdict(list)
            for uid, tid in self.sql("SELECT user_id, thing_id FROM clicks.clicks WHERE period_id = %s", (period,)):
                clicks[uid].append(tid)
            postings = collections.defaultdict(int)
            for account_id, amount in self.sql("SELECT account_id, amount FROM settlement.postings WHERE transaction_id = %s", (tx,)):
                postings[account_id] += int(amount)
            # shares of things their readers owned at the batch went back to the readers' wallets
            own = {(tid, uid): int(amount) for tid, uid, amount in self.sql(
                "SELECT thing_id, user_id, amount FROM settlement.own_shares WHERE period = %s AND transaction_id = %s", (period, tx))}
            returned = collections.defaultdict(int)
            for (_, uid), amount in own.items():
                returned[uid] += amount
            shares = collections.defaultdict(int)
            fees = 0
            for uid, things in clicks.items():
                budget = None
                for changed, amount in sorted(budget_history.get(uid, []), key=lambda x: x[0]):
                    if changed <= sealed_at:
                        budget = amount
                # the wallet as the batch found it: the postings before its transaction; a
                # transaction of this wallet written while the batch ran may or may not be in
                moves = [m for m in wallet_moves.get(uid, []) if m[0] != tx]
                before = sum(a for t, _, a in moves if t < tx)
                candidates = {before}
                near = [m for m in moves if tx_created.timestamp() - 3 < m[1].timestamp() < settled_at.timestamp() + 5]
                if near:
                    base = sum(a for t, _, a in moves if t < min(n[0] for n in near))
                    candidates.add(base)
                    for n in sorted(near):
                        base += n[2]
                        candidates.add(base)
                options = {max(0, min(budget or 0, b)) for b in candidates}
                actual = -postings.get(account_of.get(("wallet", uid)), 0) + returned[uid]
                exact = max(0, min(budget or 0, before))
                if actual != exact:
                    if actual in options:
                        concurrent += 1
                    else:
                        self.fail("settlements", f"{period}: reader {uid} charged {actual}, recomputed {exact} (budget {budget}, wallet {before}, {len(things)} clicks)")
                amount = actual if actual in options else exact
                fee = amount * FEE_BPS // 10000
                fees += fee
                ordered = sorted(things)
                base, leftover = divmod(amount - fee, len(ordered))
                for rank, tid in enumerate(ordered):
                    share = base + (1 if (rank + uid) % len(ordered) < leftover else 0)
                    if (tid, uid) in own:
                        if own[(tid, uid)] != share:
                            self.fail("settlements", f"{period}: reader {uid}'s own share of thing {tid} returned {own[(tid, uid)]}, recomputed {share}")
                        continue
                    shares[tid] += share
                readers += 1
                charged_total += amount
            # readers without clicks pay nothing (rollover)
            for (kind, owner), account_id in account_of.items():
                if kind == "wallet" and owner not in clicks and postings.get(account_id):
                    self.fail("settlements", f"{period}: reader {owner} had no clicks but was charged {-postings[account_id]}")
            if postings.get(account_of.get(("fees", None)), 0) != fees:
                self.fail("settlements", f"{period}: fees posted {postings.get(account_of.get(('fees', None)), 0)}, recomputed {fees}")
            credits = {tid: (int(amount), state, owner) for tid, amount, state, owner in self.sql(
                "SELECT thing_id, amount, state, owner_id FROM settlement.credits WHERE period = %s", (period,))}
            revenue = collections.defaultdict(int)
            for tid, share in shares.items():
                credit = credits.get(tid)
                if credit is None or credit[0] != share:
                    self.fail("settlements", f"{period}: thing {tid} credited {credit and credit[0]}, recomputed {share}")
                    continue
                escrowed = postings.get(account_of.get(("escrow", tid)), 0)
                if escrowed:
                    if escrowed != share:
                        self.fail("settlements", f"{period}: thing {tid} escrow got {escrowed}, recomputed {share}")
                    if credit[1] == "held" and owners_now.get(tid) is not None:
                        self.fail("settlements", f"{period}: thing {tid} is owned by {owners_now[tid]} (verified) now but its share is still held in escrow")
                elif share:
                    owner = owners_now.get(tid)
                    if owner is None:
                        self.fail("settlements", f"{period}: thing {tid} has no owner, but its share {share} went to revenue")
                    revenue[owner] += share
            for owner, amount in revenue.items():
                got = postings.get(account_of.get(("revenue", owner)), 0)
                if got != amount:
                    self.fail("settlements", f"{period}: creator {owner} got {got} in revenue, recomputed {amount}")
            posted_revenue = sum(v for (k, o), i in account_of.items() if k == "revenue" for v in [postings.get(i, 0)])
            if posted_revenue != sum(revenue.values()):
                self.fail("settlements", f"{period}: {posted_revenue} posted to revenue, recomputed {sum(revenue.values())}")
            if totals.get("clicks") != sum(len(v) for v in clicks.values()):
                self.fail("settlements", f"{period}: totals say {totals.get('clicks')} clicks, {sum(len(v) for v in clicks.values())} stored")
        sealed = self.sql("SELECT count(*) FROM clicks.periods WHERE state = 'sealed'")[0][0]
        if sealed != len(settled):
            self.fail("settlements", f"{sealed} periods sealed, {len(settled)} settled")
        if concurrent:
            self.findings.append(f"{concurrent} reader charges used a wallet transaction written while the batch ran (allowed)")
        return f"{len(settled)} periods, {readers} reader charges, {charged_total} cents, to the cent"

    def check_ledger(self) -> str:
        response = self.admin("GET", "/admin/ledger/check")
        body = response.json()
        if response.status_code != 200 or not body.get("ok"):
            self.fail("ledger", f"{response.status_code} {body.get('failures')}")
        totals = body.get("totals", {})
        return f"deposits {totals.get('deposits')}, paid out {totals.get('paid_out')}, escrow {totals.get('escrow')}, fees {totals.get('fees')}"

    def check_counts(self) -> str:
        """The public ``flattrs`` of every thing equals its stored clicks (waiting up to 30 s for the
        counts to catch up after the faults)."""
        began = time.monotonic()
        self.counts_deadline = began + 30  # a service that does not answer costs a deadline per thing
        first_wrong = None
        while True:
            stored = dict(self.sql("SELECT t.id, count(c.id) FROM accounts.things t LEFT JOIN clicks.clicks c ON c.thing_id = t.id GROUP BY t.id"))
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                public = dict(zip(stored, pool.map(self.public_flattrs, stored)))
            wrong = {tid: (public[tid], n) for tid, n in stored.items() if public[tid] != n}
            if wrong and not first_wrong:
                first_wrong = wrong
            if not wrong or time.monotonic() > self.counts_deadline:
                break
            time.sleep(1)
        waited = time.monotonic() - began
        if first_wrong:
            self.findings.append(f"counts: {len(first_wrong)} things were behind right after the settlement, e.g. {dict(list(first_wrong.items())[:5])} (public, stored)")
        for tid, (public, n) in list(wrong.items())[:5]:
            self.fail("counts", f"thing {tid}: flattrs {public}, {n} stored (after {waited:.0f} s)")
        if len(wrong) > 5:
            self.fail("counts", f"{len(wrong)} of {len(stored)} things wrong")
        return f"{len(stored)} things, {sum(stored.values())} clicks, exact after {waited:.1f}s"

    def public_flattrs(self, thing_id: int):
        if time.monotonic() > self.counts_deadline:
            return "not asked: out of time"
        try:
            response = requests.get(f"{self.base}/rest/v2/things/{thing_id}", timeout=CLIENT_TIMEOUT)
        except requests.RequestException as exc:
            return type(exc).__name__
        return response.json().get("flattrs") if response.status_code == 200 else response.status_code

    def check_deadlocks(self) -> str:
        lines = list(self.platform.deadlock_lines)
        try:
            with open(self.postgres.log_path, errors="replace") as fh:
                pg_lines = [line.rstrip() for line in fh if DEADLOCK in line]
        except OSError:
            pg_lines = []
        for line in (lines + pg_lines)[:5]:
            self.fail("deadlocks", line[:300])
        return f"{len(lines)} in the processes' output, {len(pg_lines)} in the PostgreSQL log"

    # -- the end
    def finish(self) -> int:
        if self.platform is not None:
            took = self.platform.stop()
            say(f"platform stopped in {took:.1f}s")
        for server, name in ((self.postgres, "postgres.log"), (self.rabbit, "rabbit.log")):
            with contextlib.suppress(OSError):
                for path in [server.log_path] + glob.glob(os.path.join(server.base, "log", "*.log")):
                    with open(path, "rb") as src, open(self.run_dir / (name if path == server.log_path else os.path.basename(path)), "wb") as dst:
                        dst.write(src.read())
            server.cleanup()
        self.pages.close()
        calls = list(self.model.calls)
        mix = collections.Counter(self.status_class(c) for c in calls)
        restarts = dict(self.platform.starts) if self.platform else {}
        with open(self.run_dir / "calls.jsonl", "w") as fh:
            for c in calls:
                fh.write(json.dumps({"kind": c.kind, "started": c.started, "seconds": round(c.ended - c.started, 3), "status": c.status, **c.meta}) + "\n")
        for finding in self.findings[:20]:
            say(f"note: {finding}")
        for failure in self.failures[:60]:
            say(f"FAILED {failure}")
        checks = " ".join(f"{k}={v}" for k, v in getattr(self, "summary", {}).items())
        waits = sorted(self.restart_waits)
        restart_note = f" restarted in {waits[len(waits) // 2]:.1f}s median, {waits[-1]:.1f}s max" if waits else ""
        verdict = "PASS" if not self.failures else f"FAIL ({len(self.failures)} failures)"
        say(
            f"soak {verdict}: {SECONDS:.0f}s seed={SEED} requests={len(calls)} "
            + " ".join(f"{k}={v}" for k, v in sorted(mix.items()))
            + f" kills={sum(self.kills.values())} ({', '.join(f'{k} {v}' for k, v in sorted(self.kills.items()))}){restart_note}"
            + f" runner_starts={sum(restarts.values()) or 'n/a'} infra_restarts=[{', '.join(self.infra_restarts)}] | {checks}"
        )
        say(f"logs: {self.run_dir}")
        return 0 if not self.failures else 1


def main() -> int:
    return Soak().run()


if __name__ == "__main__":
    sys.exit(main())
