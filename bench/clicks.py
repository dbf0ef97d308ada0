"""make bench-clicks: the end-to-end HTTP click path, against the bare-Flask reference.

Many readers (each with a personal token and means) flattr many things at random through the
real gateway, broker, click workers and PostgreSQL; wrk (2 threads, 64 connections) drives it.
Afterwards the clicks are counted: every 2xx answer is a committed row, and no click is doubled.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.common import free_port, private_environment, say, seed_click_path, service_env, spawn, stop
from bench.http import CONNECTIONS, reference, wait_http, wrk

SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))
READERS, THINGS = 1000, 1000
WORKERS = int(os.environ.get("BENCH_CLICK_WORKERS", "1"))

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


def main() -> int:
    ref = reference(SECONDS)
    say(f"  {ref.requests_per_s:,.0f} requests/s, p99 {ref.p99_ms:.1f} ms")
    with private_environment("clicks") as (db_url, amqp_uri), tempfile.TemporaryDirectory() as tmp:
        say(f"seeding {READERS} readers (tokens, means) and {THINGS} things")
        tokens = seed_click_path(db_url, READERS, THINGS)
        script = Path(tmp) / "flattr.lua"
        script.write_text(LUA % {"tokens": ",".join(f'"{t}"' for t in tokens), "things": THINGS})
        port = free_port()
        env = service_env(
            db_url, amqp_uri, GATEWAY_PORT=port, FLATTR_RATE_LIMITS="off", GATEWAY_WORKERS=2, TOKEN_CACHE_SECONDS=300,
        )
        processes = [spawn("services.accounts", env, Path(tmp) / "accounts.log")]
        processes += [spawn("services.clicks.worker", env, Path(tmp) / f"worker{i}.log") for i in range(WORKERS)]
        processes.append(spawn("services.gateway", env, Path(tmp) / "gateway.log"))
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/healthz")
            # warm up: every token checked once per gateway process, connections and reply queues made
            say("warming up")
            wrk(f"{base}/", 10, script)
            engine = create_engine(db_url)
            with engine.begin() as conn:
                before = conn.execute(text("SELECT count(*) FROM clicks.clicks")).scalar()
            say(f"click path: POST /rest/v2/things/:id/flattr, {WORKERS} click worker(s), wrk -t2 -c{CONNECTIONS} -d{SECONDS}s")
            ours = wrk(f"{base}/", SECONDS, script)
            import time

            time.sleep(2)  # requests cut by wrk's stop may still be committing
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT count(*) FROM clicks.clicks")).scalar() - before
                doubled = conn.execute(
                    text("SELECT count(*) FROM (SELECT 1 FROM clicks.clicks GROUP BY period_id, user_id, thing_id HAVING count(*) > 1) d")
                ).scalar()
            engine.dispose()
        finally:
            stop(processes)
        ok = ours.statuses.get("ok", 0)
        say(f"  {ours.requests_per_s:,.0f} requests/s, p99 {ours.p99_ms:.1f} ms; answers {ours.statuses}")
        # wrk stops with up to one request in flight per connection: those may be committed unanswered
        exact = doubled == 0 and ok <= rows <= ok + CONNECTIONS and ours.statuses.get("other", 0) == 0
        say(f"rows committed {rows}, 2xx answers {ok}, doubled clicks {doubled}: {'exact' if exact else 'NOT EXACT'}")
        ratio = ours.requests_per_s / ref.requests_per_s
        print(
            f"ratio={ratio:.2f} clicks_per_s={ours.requests_per_s:.0f} p99_ms={ours.p99_ms:.1f} "
            f"reference_per_s={ref.requests_per_s:.0f} reference_p99_ms={ref.p99_ms:.1f} exact={'yes' if exact else 'no'}"
        )
        return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
