"""make bench-clicks: the click path on the whole platform, against the bare-Flask reference.

Every process that ``make dev`` starts runs (``python -m deploy.dev`` itself, against a private
database and virtual host), with the settings a user gets but for rate limits. Many readers
(each with a personal token and means) flattr many things at random through the gateway, broker,
click workers and PostgreSQL; wrk (2 threads, 64 connections) drives it. Afterwards: every 2xx
answer is one committed row and no click is doubled; two seconds after the load stops, the public
``flattrs`` of every thing (read through the API) and the counts behind the search sorts equal the
stored clicks; nothing is left queued and no deadlock was logged. The CPU each process used
during the run is printed, so the next optimisation is visible.
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

import requests
from sqlalchemy import create_engine, text

from bench import processes
from bench.common import RABBIT_API, ROOT, private_environment, say, service_env
from testsupport.instances import free_port
from testsupport.seeding import seed_click_path
from bench.http import CONNECTIONS, reference, wait_http, wrk

SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))
READERS = int(os.environ.get("BENCH_READERS", "2000"))
THINGS = int(os.environ.get("BENCH_THINGS", "5000"))
COUNTS_WITHIN_SECONDS = 2.0
WARM_UP_MAX_ROUNDS = 16

LUA = """
local tokens = {%(tokens)s}
local things = %(things)d
local threads = {}
local counter = 0
function setup(thread) counter = counter + 1; thread:set("seed", counter); table.insert(threads, thread) end
function init(args) ok = 0; once = 0; other = 0; math.randomseed(os.time() * 100 + seed) end
function request()
  local token = tokens[math.random(#tokens)]
  return wrk.format("POST", "/rest/v2/things/" .. math.random(things) .. "/flattr", {["Authorization"] = "Bearer " .. token}, "")
end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 elseif status == 403 then once = once + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local o, n, x = 0, 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); n = n + t:get("once"); x = x + t:get("other") end
  io.write(string.format("STATUS ok=%%d flattr_once=%%d other=%%d\\n", o, n, x))
end
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _public_counts(base: str) -> dict[int, int]:
    counts = {}
    for start in range(1, THINGS + 1, 100):
        ids = ",".join(str(i) for i in range(start, min(start + 100, THINGS + 1)))
        for thing in requests.get(f"{base}/rest/v2/things/{ids}", timeout=10).json():
            counts[thing["id"]] = thing["flattrs"]
    return counts


def _queued_messages(amqp_uri: str, patience: float = 12.0) -> dict[str, int]:
    """Messages still waiting in the run's queues once the broker's statistics have caught up
    (the management API refreshes them every 5 s): a backlog is still there after that."""
    vhost = unquote(urlparse(amqp_uri).path.lstrip("/"))
    deadline = time.monotonic() + patience
    while True:
        queues = requests.get(f"{RABBIT_API}/queues/{quote(vhost, safe='')}", timeout=10).json()
        waiting = {q["name"]: q["messages"] for q in queues if q.get("messages") and not q["name"].startswith("amq.")}
        if not waiting or time.monotonic() > deadline:
            return waiting
        time.sleep(1)


def _warm_up(base: str, script: Path) -> None:
    """The same load until its rate is steady: every gateway process has checked the readers'
    tokens (a real platform's steady state: each process trusts a checked token for minutes),
    connections and reply queues are made."""
    rates = []
    for round_ in range(1, WARM_UP_MAX_ROUNDS + 1):
        rates.append(wrk(f"{base}/", 5, script).requests_per_s)
        say(f"  warming up, round {round_}: {rates[-1]:,.0f} requests/s")
        if len(rates) >= 4 and abs(rates[-1] - rates[-2]) < 0.05 * rates[-2] and rates[-1] >= 0.9 * max(rates):
            return


def main() -> int:
    ref = reference(SECONDS)
    say(f"  {ref.requests_per_s:,.0f} requests/s, p99 {ref.p99_ms:.1f} ms")
    with private_environment("clicks") as (db_url, amqp_uri), tempfile.TemporaryDirectory() as tmp:
        say(f"seeding {READERS:,} readers (tokens, means) and {THINGS:,} things")
        tokens = seed_click_path(db_url, READERS, THINGS)
        script = Path(tmp) / "flattr.lua"
        script.write_text(LUA % {"tokens": ",".join(f'"{t}"' for t in tokens), "things": THINGS})
        port = free_port()
        env = service_env(db_url, amqp_uri, GATEWAY_PORT=port, FLATTR_RATE_LIMITS="off", LOG_LEVEL="INFO",
                          SMTP_PORT=free_port(), MAIL_CATCHER_DIR=str(Path(tmp) / "mail"))
        log_path = Path(tmp) / "dev.log"
        with open(log_path, "w") as log:
            dev = subprocess.Popen([sys.executable, "-m", "deploy.dev"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            say("starting every process of make dev")
            wait_http(f"{base}/readyz", timeout=120)
            _warm_up(base, script)
            time.sleep(2)  # the warm-up's last requests, cut by wrk's stop, may still be committing
            engine = create_engine(db_url)
            with engine.begin() as conn:
                before = conn.execute(text("SELECT count(*) FROM clicks.clicks")).scalar()
            say(f"click path: POST /rest/v2/things/:id/flattr, the whole platform, wrk -t2 -c{CONNECTIONS} -d{SECONDS}s")
            cpu_before, load_before, started = processes.snapshot(dev.pid), _children_cpu(), time.monotonic()
            ours = wrk(f"{base}/", SECONDS, script)
            wall = time.monotonic() - started
            cpu = processes.breakdown(cpu_before, processes.snapshot(dev.pid), wall, {"wrk": _children_cpu() - load_before})
            stopped = time.monotonic()
            time.sleep(max(0.0, COUNTS_WITHIN_SECONDS - (time.monotonic() - stopped)))
            public = _public_counts(base)
            with engine.connect() as conn:
                stored = dict(conn.execute(text("SELECT thing_id, count(*) FROM clicks.clicks GROUP BY thing_id")).all())
                sorted_by = dict(conn.execute(text("SELECT id, flattrs FROM accounts.things")).all())
                rows = sum(stored.values()) - before
                doubled = conn.execute(
                    text("SELECT count(*) FROM (SELECT 1 FROM clicks.clicks GROUP BY period_id, user_id, thing_id HAVING count(*) > 1) d")
                ).scalar()
            engine.dispose()
            public_off = sum(1 for t in range(1, THINGS + 1) if public.get(t, 0) != stored.get(t, 0))
            sorts_off = sum(1 for t in range(1, THINGS + 1) if sorted_by.get(t, 0) != stored.get(t, 0))
            queued = _queued_messages(amqp_uri)
        finally:
            dev.send_signal(signal.SIGTERM)
            try:
                dev.wait(timeout=15)
            except subprocess.TimeoutExpired:
                dev.kill()
        deadlocks = log_path.read_text().count("deadlock detected")
        ok = ours.statuses.get("ok", 0)
        say(f"  {ours.requests_per_s:,.0f} requests/s, p99 {ours.p99_ms:.1f} ms; answers {ours.statuses}")
        say(f"CPU during the run (share of both cores): {cpu}")
        # wrk stops with up to one request in flight per connection: those may be committed unanswered
        exact = doubled == 0 and ok <= rows <= ok + CONNECTIONS and ours.statuses.get("other", 0) == 0
        say(f"rows committed {rows:,}, 2xx answers {ok:,}, doubled clicks {doubled}: {'exact' if exact else 'NOT EXACT'}")
        say(
            f"{COUNTS_WITHIN_SECONDS:g} s after the load: things whose public flattrs differ from the stored clicks {public_off}, "
            f"whose sort counts differ {sorts_off}; messages still queued {sum(queued.values())} {queued or ''}; deadlocks logged {deadlocks}"
        )
        counts_exact = public_off == 0 and sorts_off == 0 and not queued and deadlocks == 0
        ratio = ours.requests_per_s / ref.requests_per_s
        print(
            f"ratio={ratio:.2f} clicks_per_s={ours.requests_per_s:.0f} p99_ms={ours.p99_ms:.1f} "
            f"reference_per_s={ref.requests_per_s:.0f} reference_p99_ms={ref.p99_ms:.1f} "
            f"exact={'yes' if exact else 'no'} counts_exact={'yes' if counts_exact else 'no'}"
        )
        return 0 if exact and counts_exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
