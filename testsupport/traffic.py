"""Mixed traffic through the platform's HTTP API while something breaks, and what it must leave.

``MixedTraffic`` signs up readers, gives them tokens, budgets, money and things, then keeps a few
client threads busy with flattrs, deposits (with idempotency keys), budget changes and claims of
unowned things (pages it serves itself on 127.0.0.1), recording every answer (``Call``). Each
reader belongs to one client thread, so the order of a reader's requests is known.

Afterwards ``check`` compares the answers with what the platform stored, from the raw tables:

- every 2xx was carried out exactly once: each flattr is one stored click, each deposit one
  completed deposit and one ledger transaction, each budget and claim is in force; nothing was
  stored that no request asked for (a 503 or a lost answer may or may not have been carried out);
- no event was lost: every outbox row was relayed, and every replica fed by events converged to
  its source (budgets and means, things' owners in clicks and settlement, every thing's public
  ``flattrs`` equal to its stored clicks), and the ledger check holds (``/admin/ledger/check``);
- every answer came within the deadline and every failure was a 503 (``disruptions``).

``recovery(after)`` is the time from a fault until the last disrupted answer: from then on every
answer was a normal one. Written for a process monkey-patched by eventlet (threads are green).
"""
from __future__ import annotations

import collections
import contextlib
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import requests

PASSWORD = "traffic password 123"
SCOPES = "flattr thing extendedread wallet payout"
# answers that are the platform working normally (not a fault's doing)
NORMAL = {200, 201, 204, 401, 402, 403, 404, 409}


@dataclass
class Call:
    kind: str
    started: float
    ended: float
    status: int | str  # an HTTP status, "timeout" (no answer in time) or "conn" (connection lost)
    meta: dict

    @property
    def ok(self) -> bool:
        return isinstance(self.status, int) and 200 <= self.status < 300

    @property
    def unknown(self) -> bool:
        """Its outcome cannot be told from its answer: it may or may not have been carried out."""
        return not isinstance(self.status, int) or self.status >= 500

    @property
    def disrupted(self) -> bool:
        return self.status not in NORMAL


@dataclass
class Reader:
    name: str
    headers: dict
    user_id: int | None = None
    things: list = field(default_factory=list)


class ClaimPages:
    """``/u/<n>``: a page whose ``flattr:owner`` mark is set (in ``owners``) before a claim."""

    def __init__(self):
        self.owners: dict[str, str] = {}
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                owner = pages.owners.get(self.path.split("?", 1)[0])
                meta = f'<meta name="flattr:owner" content="{owner}">' if owner else ""
                body = f"<!doctype html><html><head><title>A page</title>{meta}</head><body>hello</body></html>".encode()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _until_answered(request, expected: set[int], attempts: int = 10) -> requests.Response:
    """``request()`` again while it is answered 503 (or not at all), up to ``attempts`` times."""
    for _ in range(attempts):
        try:
            response = request()
        except requests.RequestException:
            continue
        if response.status_code != 503:
            assert response.status_code in expected, (response.status_code, response.text)
            return response
        time.sleep(0.5)
    raise AssertionError(f"still no answer after {attempts} attempts")


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class MixedTraffic:
    def __init__(self, base: str, admin_token: str, dsn: str, deadline: float, clients: int = 4, seed: int | None = None):
        self.base = base
        self.admin_token = admin_token
        self.dsn = dsn
        self.deadline = deadline
        self.clients = clients
        self.seed = int(time.time()) if seed is None else seed
        self.calls: list[Call] = []
        self.readers: list[Reader] = []
        self.claimable: list[int] = []  # things flattred by URL before anyone owned them
        self.unowned: list[tuple[int, str]] = []  # (thing id, page path) of those not claimed yet
        self.pages = ClaimPages()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- requests -----------------------------------------------------------------------------------

    def call(self, http: requests.Session, kind: str, method: str, path: str, meta: dict | None = None, **kwargs) -> tuple[Call, dict | None]:
        started = time.time()
        body = None
        try:
            # a little over the deadline: a 503 at the deadline still counts as an answer
            response = http.request(method, self.base + path, timeout=(3.05, self.deadline + 3.0), **kwargs)
            status = response.status_code
            if response.headers.get("Content-Type", "").startswith("application/json"):
                with contextlib.suppress(ValueError):
                    body = response.json()
            if status == 503 and not response.headers.get("Retry-After"):
                (meta := dict(meta or {}))["no_retry_after"] = True
        except requests.Timeout:
            status = "timeout"
        except requests.RequestException:
            status = "conn"
            http.close()
        record = Call(kind, started, time.time(), status, dict(meta or {}))
        if isinstance(body, dict) and isinstance(status, int) and status >= 400:
            record.meta["error"] = body.get("error")
        with self._lock:
            self.calls.append(record)
        return record, body

    def admin(self, method: str, path: str) -> requests.Response:
        return requests.request(method, self.base + path, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=self.deadline + 3)

    # -- the readers, before anything breaks ------------------------------------------------------

    def setup(self, readers: int = 16, things: int = 3, unowned: int = 12) -> None:
        """Readers with a token, a budget, money and ``things`` things each, and ``unowned`` things
        flattred by URL (to be claimed). Everything must succeed: nothing is broken yet."""
        began = time.monotonic()
        # four at a time: signing up hashes a password, and a loaded machine answers slowly
        failures = []

        def make(n: int) -> None:
            try:
                for _ in range(n):
                    self._new_reader(things)
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

        workers = [threading.Thread(target=make, args=(n,)) for n in _shares(readers, 4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert not failures and len(self.readers) == readers, f"readers could not be set up: {failures}"
        http = requests.Session()
        for n in range(unowned):
            path = f"/u/{uuid.uuid4().hex[:8]}-{n}"
            reader = self.readers[n % len(self.readers)]
            for _ in range(10):
                call, body = self.call(http, "flattr", "POST", "/rest/v2/flattr", {"user": reader.user_id, "url": self.pages.url(path)},
                                       headers=reader.headers, json={"url": self.pages.url(path)})
                if not call.unknown:
                    break
            assert call.ok or (body or {}).get("error") == "flattr_once", (call, body)
            thing = self.sql("SELECT id FROM accounts.things WHERE url = %s", (self.pages.url(path),))[0][0]
            self.unowned.append((thing, path))
            self.claimable.append(thing)
        self.setup_seconds = time.monotonic() - began

    def _new_reader(self, things: int) -> None:
        """One more reader (each thread of ``setup`` makes a few). Nothing is broken yet, but a
        loaded machine may answer 503 within the short deadline: each step is asked again then,
        and its outcome read from the database where a lost answer leaves it unknown."""
        http = requests.Session()
        name = f"t{uuid.uuid4().hex[:10]}"
        signup = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
        _until_answered(lambda: http.post(f"{self.base}/rest/v2/users", json=signup, timeout=30), {201, 409})
        token = _until_answered(lambda: http.post(f"{self.base}/rest/v2/user/tokens", auth=(name, PASSWORD), data={"scope": SCOPES}, timeout=30), {201})
        reader = Reader(name, {"Authorization": f"Bearer {token.json()['access_token']}"})
        reader.user_id = self.sql("SELECT id FROM accounts.users WHERE username = %s", (name,))[0][0]
        budget = {"amount": 1000}
        _until_answered(lambda: http.put(f"{self.base}/rest/v2/user/budget", headers=reader.headers, json=budget, timeout=30), {200})
        deposit = {"amount": 5000, "idempotency_key": uuid.uuid4().hex}
        _until_answered(lambda: http.post(f"{self.base}/rest/v2/user/deposits", headers=reader.headers, json=deposit, timeout=30), {200, 201})
        with self._lock:
            self.calls.append(Call("budget", time.time(), time.time(), 200, {"user": reader.user_id, "amount": budget["amount"]}))
            self.calls.append(Call("deposit", time.time(), time.time(), 201, {"user": reader.user_id, "key": deposit["idempotency_key"], "amount": deposit["amount"]}))
        for n in range(things):
            url = f"https://{name}.example/{n}"
            _until_answered(lambda: http.post(f"{self.base}/rest/v2/things", headers=reader.headers, json={"url": url, "title": "Made by a reader"}, timeout=30), {201, 409})
            reader.things.append(self.sql("SELECT id FROM accounts.things WHERE url = %s", (url,))[0][0])
        with self._lock:
            self.readers.append(reader)

    # -- actions ------------------------------------------------------------------------------------

    def flattr(self, http, reader: Reader, rng: random.Random) -> Call:
        things = [t for r in self.readers for t in r.things if r is not reader] + [t for t, _ in self.unowned]
        thing = rng.choice(things)
        return self.call(http, "flattr", "POST", f"/rest/v2/things/{thing}/flattr", {"user": reader.user_id, "thing": thing}, headers=reader.headers)[0]

    def deposit(self, http, reader: Reader, rng: random.Random) -> Call:
        amount = rng.randrange(500, 3000)
        if amount % 100 in (13, 66):  # the sandbox's magic amounts: declined, provider error
            amount += 1
        key = uuid.uuid4().hex
        return self.call(http, "deposit", "POST", "/rest/v2/user/deposits", {"user": reader.user_id, "key": key, "amount": amount},
                         headers=reader.headers, json={"amount": amount, "idempotency_key": key})[0]

    def set_budget(self, http, reader: Reader, rng: random.Random) -> Call:
        amount = rng.choice([200, 300, 500, 800, 1000, 1500, 2000])
        return self.call(http, "budget", "PUT", "/rest/v2/user/budget", {"user": reader.user_id, "amount": amount},
                         headers=reader.headers, json={"amount": amount})[0]

    def claim(self, http, reader: Reader, rng: random.Random) -> Call | None:
        with self._lock:
            if not self.unowned:
                return None
            thing, path = self.unowned.pop(rng.randrange(len(self.unowned)))
        self.pages.owners[path] = reader.name
        call = self.call(http, "claim", "POST", f"/rest/v2/things/{thing}/claim", {"user": reader.user_id, "thing": thing}, headers=reader.headers)[0]
        if not call.ok:
            with self._lock:
                self.unowned.append((thing, path))  # claimed again later, maybe by another reader
        return call

    def _client(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        mine = self.readers[index :: self.clients]
        http = requests.Session()
        while not self._stop.is_set():
            reader = rng.choice(mine)
            roll = rng.random()
            if roll < 0.6:
                self.flattr(http, reader, rng)
            elif roll < 0.75:
                self.deposit(http, reader, rng=rng)
            elif roll < 0.9:
                self.set_budget(http, reader, rng)
            elif roll < 0.95:
                self.claim(http, reader, rng)
            else:
                self.call(http, "read", "GET", "/rest/v2/user/wallet", {"user": reader.user_id}, headers=reader.headers)
            time.sleep(rng.uniform(0.02, 0.08))

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(self.clients)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.deadline + 10)
        self.pages.close()

    # -- what the answers say ------------------------------------------------------------------

    def since(self, moment: float) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.ended >= moment]

    def recovery(self, fault_at: float, until: float) -> float:
        """Seconds from ``fault_at`` to the end of the last disrupted answer before ``until``
        (0 when nothing was disrupted)."""
        with self._lock:
            disrupted = [c.ended for c in self.calls if c.disrupted and fault_at <= c.ended <= until]
        return max(disrupted) - fault_at if disrupted else 0.0

    def answers(self, start: float, end: float) -> collections.Counter:
        with self._lock:
            return collections.Counter(str(c.status) for c in self.calls if start <= c.ended <= end)

    # -- what the platform stored ---------------------------------------------------------------

    def sql(self, query: str, params=None) -> list[tuple]:
        conn = psycopg2.connect(self.dsn, connect_timeout=10)
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall()
        finally:
            conn.close()

    def check(self, converge_seconds: float = 30.0) -> tuple[list[str], dict[str, str]]:
        """(failures, figures): every check named in the module's docstring."""
        failures: list[str] = []
        figures: dict[str, str] = {}
        for name, check in (
            ("answers", self._check_answers),
            ("flattrs", self._check_flattrs),
            ("deposits", self._check_deposits),
            ("budgets", self._check_budgets),
            ("claims", self._check_claims),
            ("events", lambda f: self._check_events(f, converge_seconds)),
            ("ledger", self._check_ledger),
        ):
            before = len(failures)
            figures[name] = check(failures) + ("" if len(failures) == before else " FAILED")
        return failures, figures

    def _check_answers(self, failures: list[str]) -> str:
        statuses = collections.Counter(str(c.status) for c in self.calls)
        for c in self.calls:
            if c.disrupted and c.status != 503:
                failures.append(f"answers: {c.kind} {c.meta} answered {c.status} (a failure must be 503)")
            elif c.status == 503 and c.meta.get("no_retry_after"):
                failures.append(f"answers: {c.kind} {c.meta} answered 503 without Retry-After")
            elif c.ended - c.started > self.deadline + 1.0:
                failures.append(f"answers: {c.kind} answered {c.status} after {c.ended - c.started:.1f} s, past the deadline")
        return " ".join(f"{k}={v}" for k, v in sorted(statuses.items()))

    def _check_flattrs(self, failures: list[str]) -> str:
        asked = collections.defaultdict(lambda: [0, 0])  # (user, thing) -> [2xx, unknown]
        urls = dict((url, tid) for tid, url in self.sql("SELECT id, url FROM accounts.things"))
        for c in self.calls:
            if c.kind != "flattr":
                continue
            thing = c.meta.get("thing") or urls.get(c.meta.get("url"))
            if c.ok:
                asked[(c.meta["user"], thing)][0] += 1
            elif c.unknown:
                asked[(c.meta["user"], thing)][1] += 1
        stored = collections.Counter(self.sql("SELECT user_id, thing_id FROM clicks.clicks"))
        for pair in set(asked) | set(stored):
            oks, unknown = asked.get(pair, (0, 0))
            n = stored.get(pair, 0)
            if oks > 1 or n > 1:
                failures.append(f"flattrs: reader {pair[0]} on thing {pair[1]}: {oks} answered 2xx, {n} stored (once a period)")
            elif oks and not n:
                failures.append(f"flattrs: reader {pair[0]} on thing {pair[1]} answered 2xx, not stored")
            elif n and not oks and not unknown:
                failures.append(f"flattrs: reader {pair[0]} on thing {pair[1]} stored, but no request for it was answered 2xx or 503")
        oks = sum(v[0] for v in asked.values())
        return f"{oks} 2xx, {sum(stored.values())} stored, {sum(v[1] for v in asked.values())} unknown"

    def _check_deposits(self, failures: list[str]) -> str:
        rows = {
            (uid, key): (amount, state, transactions)
            for uid, key, amount, state, transactions in self.sql(
                "SELECT d.user_id, d.idempotency_key, d.amount, d.state, "
                "(SELECT count(*) FROM settlement.transactions t WHERE t.idempotency_key = 'deposit:' || d.user_id || ':' || d.idempotency_key) "
                "FROM settlement.deposits d"
            )
        }
        asked = {}
        for c in self.calls:
            if c.kind == "deposit":
                asked[(c.meta["user"], c.meta["key"])] = c
        for pair, c in asked.items():
            row = rows.get(pair)
            if c.ok and (row is None or row[1] != "completed" or row[0] != c.meta["amount"] or row[2] != 1):
                failures.append(f"deposits: a 2xx deposit of {c.meta['amount']} by reader {pair[0]} is {row} (amount, state, ledger transactions)")
            elif not c.ok and not c.unknown and row is not None and row[1] == "completed":
                failures.append(f"deposits: a deposit answered {c.status} is in the ledger: {row}")
        for pair, row in rows.items():
            if pair not in asked:
                failures.append(f"deposits: a deposit of {row[0]} by reader {pair[0]} was never asked for")
        completed = sum(1 for r in rows.values() if r[1] == "completed")
        return f"{sum(1 for c in asked.values() if c.ok)} 2xx, {completed} completed"

    def _check_budgets(self, failures: list[str]) -> str:
        """A reader's budget is the last one answered 2xx, or one asked for after it whose answer
        was lost (503); settlement's replica equals it."""
        by_user = collections.defaultdict(list)
        for c in sorted((c for c in self.calls if c.kind == "budget"), key=lambda c: c.started):
            by_user[c.meta["user"]].append(c)
        stored = dict(self.sql("SELECT id, budget_cents FROM accounts.users"))
        for uid, calls in by_user.items():
            last_ok = max((i for i, c in enumerate(calls) if c.ok), default=None)
            allowed = {c.meta["amount"] for c in calls[(last_ok or 0):] if c.ok or c.unknown}
            if last_ok is None:
                allowed |= {c.meta["amount"] for c in calls if c.unknown}
            if stored.get(uid) not in allowed:
                failures.append(f"budgets: reader {uid} has {stored.get(uid)}, answers allow {sorted(allowed)}")
        return f"{sum(1 for c in self.calls if c.kind == 'budget' and c.ok)} 2xx of {sum(len(v) for v in by_user.values())}"

    def _check_claims(self, failures: list[str]) -> str:
        owners = dict(self.sql("SELECT id, owner_id FROM accounts.things"))
        claims = [c for c in self.calls if c.kind == "claim"]
        for c in claims:
            if c.ok and owners.get(c.meta["thing"]) != c.meta["user"]:
                failures.append(f"claims: thing {c.meta['thing']} claimed (2xx) by reader {c.meta['user']} is owned by {owners.get(c.meta['thing'])}")
        claimed = {c.meta["thing"] for c in claims if c.ok or c.unknown}
        for tid in self.claimable:
            if owners.get(tid) is not None and tid not in claimed:
                failures.append(f"claims: thing {tid} is owned by {owners[tid]}, with no claim answered 2xx or 503")
        return f"{sum(1 for c in claims if c.ok)} 2xx of {len(claims)}"

    def _check_events(self, failures: list[str], converge_seconds: float) -> str:
        """Every outbox row relayed and every replica equal to its source, within ``converge_seconds``."""
        checks = {
            "unsent outbox rows": "SELECT count(*) FROM (SELECT id FROM accounts.outbox WHERE sent_at IS NULL UNION ALL "
            "SELECT id FROM clicks.outbox WHERE sent_at IS NULL UNION ALL SELECT id FROM settlement.outbox WHERE sent_at IS NULL) o",
            "budgets differing in settlement": "SELECT count(*) FROM accounts.users u LEFT JOIN settlement.budgets b ON b.user_id = u.id "
            "WHERE u.budget_cents IS NOT NULL AND b.amount IS DISTINCT FROM u.budget_cents",
            "means differing in clicks": "SELECT count(*) FROM settlement.means m LEFT JOIN clicks.means c ON c.user_id = m.user_id "
            "WHERE c.has_means IS DISTINCT FROM m.has_means",
            "owners differing in clicks": "SELECT count(*) FROM accounts.things t LEFT JOIN clicks.things c ON c.thing_id = t.id "
            "WHERE c.owner_id IS DISTINCT FROM t.owner_id",
            "owners differing in settlement": "SELECT count(*) FROM accounts.things t LEFT JOIN settlement.things s ON s.thing_id = t.id "
            "WHERE s.owner_id IS DISTINCT FROM t.owner_id",
            "counts differing in accounts": "SELECT count(*) FROM accounts.things t WHERE t.flattrs <> "
            "(SELECT count(*) FROM clicks.clicks c WHERE c.thing_id = t.id)",
        }
        began = time.monotonic()
        while True:
            wrong = {name: n for name, query in checks.items() if (n := self.sql(query)[0][0])}
            if not wrong or time.monotonic() - began > converge_seconds:
                break
            time.sleep(0.5)
        waited = time.monotonic() - began
        for name, n in wrong.items():
            failures.append(f"events: {n} {name} {waited:.0f} s after the traffic")
        # what readers see: every thing's public count
        http = requests.Session()
        stored = dict(self.sql("SELECT t.id, count(c.id) FROM accounts.things t LEFT JOIN clicks.clicks c ON c.thing_id = t.id GROUP BY t.id"))
        public_wrong = {}
        for tid, n in stored.items():
            response = http.get(f"{self.base}/rest/v2/things/{tid}", timeout=self.deadline + 3)
            flattrs = response.json().get("flattrs") if response.status_code == 200 else response.status_code
            if flattrs != n:
                public_wrong[tid] = (flattrs, n)
        if public_wrong:
            failures.append(f"events: public flattrs differ from the stored clicks (public, stored): {dict(list(public_wrong.items())[:5])}")
        return f"replicas equal after {waited:.1f} s, {len(stored)} things' public counts exact" if not wrong and not public_wrong else ""

    def _check_ledger(self, failures: list[str]) -> str:
        response = self.admin("GET", "/admin/ledger/check")
        body = response.json()
        if response.status_code != 200 or not body.get("ok"):
            failures.append(f"ledger: {response.status_code} {body.get('failures')}")
        return "balanced" if body.get("ok") else ""
