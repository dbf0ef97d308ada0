"""Load generation with wrk (2 threads, 64 connections) and the bare-Flask reference."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.common import ROOT, say
from testsupport.instances import free_port

THREADS, CONNECTIONS = 2, 64


@dataclass
class Load:
    requests_per_s: float
    p99_ms: float
    statuses: dict
    output: str


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, seconds: int, script: Path | None = None) -> Load:
    argv = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if script:
        argv += ["-s", str(script)]
    out = subprocess.run(argv + [url], capture_output=True, text=True, timeout=seconds + 60).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    statuses = {}
    found = re.search(r"STATUS (.*)", out)
    if found:
        statuses = {k: int(v) for k, v in (pair.split("=") for pair in found.group(1).split())}
    return Load(rate, _ms(*p99.groups()) if p99 else float("nan"), statuses, out)


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=5).status_code < 500:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


def reference(seconds: int) -> Load:
    """A bare Flask app, one constant view, gunicorn with 2 sync workers, same wrk settings."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "sync", "-b", f"127.0.0.1:{port}", "--log-level", "warning", "bench.reference_app:app"],
        cwd=ROOT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/ping")
        say(f"reference: bare Flask on gunicorn (2 sync workers), wrk -t{THREADS} -c{CONNECTIONS} -d{seconds}s")
        return wrk(f"http://127.0.0.1:{port}/ping", seconds)
    finally:
        server.terminate()
        server.wait(timeout=10)
