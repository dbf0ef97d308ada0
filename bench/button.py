"""make bench-button: the SVG badge and the iframe button against the bare-Flask reference.

The real gateway (counts from its short-lived cache, refreshed from the clicks service) serves
one thing's badge and button to wrk (2 threads, 64 connections); the reference is the same bare
Flask app on gunicorn with 2 sync workers, in the same run.
"""
from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import requests

from bench.common import private_environment, say, service_env, spawn, stop
from testsupport.instances import free_port
from testsupport.seeding import seed_click_path
from bench.http import CONNECTIONS, reference, wait_http, wrk

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))


def main() -> int:
    ref = reference(SECONDS)
    say(f"  {ref.requests_per_s:,.0f} requests/s, p99 {ref.p99_ms:.1f} ms")
    results = {}
    with private_environment("button") as (db_url, amqp_uri), tempfile.TemporaryDirectory() as tmp:
        seed_click_path(db_url, 10, 10)
        port = free_port()
        env = service_env(
            db_url,
            amqp_uri,
            GATEWAY_PORT=port,
            FLATTR_RATE_LIMITS="off",
            GATEWAY_WORKERS=2,
            FLATTR_SECRET_KEY=secrets.token_urlsafe(32),
            FLATTR_PUBLIC_URL=f"http://127.0.0.1:{port}",
        )
        processes = [spawn(m, env, Path(tmp) / f"{m}.log") for m in ("services.accounts", "services.clicks", "services.gateway")]
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/healthz")
            for _ in range(100):
                if requests.get(f"{base}/button/1.svg").status_code == 200:
                    break
                import time

                time.sleep(0.2)
            for name, path in (("badge", "/button/1.svg"), ("button", "/button/1")):
                say(f"{name}: GET {path}, wrk -t2 -c{CONNECTIONS} -d{SECONDS}s")
                results[name] = wrk(f"{base}{path}", SECONDS)
                say(f"  {results[name].requests_per_s:,.0f} requests/s, p99 {results[name].p99_ms:.1f} ms")
        finally:
            stop(processes)
    ratios = {name: r.requests_per_s / ref.requests_per_s for name, r in results.items()}
    main_ratio = min(ratios.values())
    print(
        f"ratio={main_ratio:.2f} badge_ratio={ratios['badge']:.2f} button_ratio={ratios['button']:.2f} "
        f"badge_per_s={results['badge'].requests_per_s:.0f} button_per_s={results['button'].requests_per_s:.0f} "
        f"reference_per_s={ref.requests_per_s:.0f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
