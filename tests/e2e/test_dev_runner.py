"""``make dev`` behaves like production: a child that dies is restarted and serves again, a
signal stops every child cleanly within 3 s, and the logs are what an operator can read."""
import json
import os
import re
import signal

import pytest
import requests

from testsupport.devstack import group_alive, started_pids, stop_group, wait_ready
from tests.factories import PASSWORD, eventually

SERVICES = ("accounts", "clicks", "click-worker", "settlement", "payouts", "batch", "gateway", "mail")
LINE = re.compile(r"^\s*(?P<name>[\w-]+) \| (?P<text>.*)$")


def lines_of(log_text: str, name: str) -> list[str]:
    return [m["text"] for m in map(LINE.match, log_text.splitlines()) if m and m["name"] == name]


def sign_up(base: str, username: str, headers=None) -> requests.Response:
    return requests.post(
        f"{base}/rest/v2/users",
        data={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
        headers=headers or {},
        timeout=15,
    )


@pytest.mark.slow
def test_a_killed_child_is_restarted_and_serves_and_sigterm_stops_all_within_3_seconds(dev_stack):
    process, base, log = dev_stack
    wait_ready(process, base, log)
    first = started_pids(log.read_text())
    assert sorted(first) == sorted(SERVICES), log.read_text()
    assert sign_up(base, "before").status_code == 201

    # SIGKILL leaves no time to clean up, as the OOM killer or a crash would not
    for name in ("accounts", "click-worker", "gateway"):
        os.kill(first[name], signal.SIGKILL)
    restarted = eventually(
        lambda: (pids := started_pids(log.read_text())) and all(pids[n] != first[n] for n in ("accounts", "click-worker", "gateway")) and pids,
        timeout=10,
    )
    assert restarted, log.read_text()
    text = log.read_text()
    for name in ("accounts", "click-worker", "gateway"):
        assert f"dev | {name} pid={first[name]} exited with signal SIGKILL; restarting in" in text
    # the restarted accounts answers (sign-up is its RPC), through the restarted gateway
    wait_ready(process, base, log, timeout=30)
    assert eventually(lambda: sign_up(base, "after").status_code == 201, timeout=20), log.read_text()
    for name in SERVICES:
        assert restarted[name] > 0 and _alive(restarted[name]), name

    stopped_after = stop_group(process)
    text = log.read_text()
    assert not group_alive(process.pid), text
    assert stopped_after < 3, f"took {stopped_after:.2f}s to stop\n{text}"
    assert "killing" not in text and "did not stop in time" not in text
    for name in ("accounts", "clicks", "settlement", "payouts", "batch"):
        assert any(line.startswith("20") and " stopped in " in line for line in lines_of(text, name)), name
    print(f"stopped after {stopped_after:.2f}s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.slow
def test_logs_read_as_an_operator_needs_them(dev_stack):
    process, base, log = dev_stack
    wait_ready(process, base, log)
    assert sign_up(base, "taken").status_code == 201

    # three expected user errors, each with the caller's request id
    taken = sign_up(base, "taken", headers={"X-Request-Id": "req-taken-1"})
    assert taken.status_code == 409 and taken.headers["X-Request-Id"] == "req-taken-1"
    wrong = requests.post(f"{base}/rest/v2/user/tokens", auth=("taken", "not the password"), data={"scope": "thing"}, headers={"X-Request-Id": "req-wrong-2"})
    assert wrong.status_code == 401
    miss = requests.get(f"{base}/rest/v2/things/lookup", params={"url": "https://nobody.example/"}, headers={"X-Request-Id": "req-miss-3"}, allow_redirects=False)
    assert miss.status_code == 404
    # an id that is not a sane token is replaced by a fresh one
    odd = requests.get(f"{base}/healthz", headers={"X-Request-Id": "x" * 65})
    fresh = odd.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", fresh)

    def service_line(request_id):
        return [line for line in lines_of(log.read_text(), "accounts") if f"request_id={request_id}" in line]

    for request_id, error in (("req-taken-1", "Conflict"), ("req-wrong-2", "Unauthorized"), ("req-miss-3", "NotFound")):
        lines = eventually(lambda: service_line(request_id), timeout=5)
        assert len(lines) == 1 and " INFO " in lines[0] and f"answered {error}" in lines[0], lines

    access = eventually(lambda: [line for line in lines_of(log.read_text(), "gateway") if "gateway.access" in line and "req-miss-3" in line], timeout=5)
    assert len(access) == 1
    assert re.search(r" INFO gateway\.access: GET /rest/v2/things/lookup 404 \d+\.\dms request_id=req-miss-3$", access[0]), access
    assert eventually(lambda: any("GET /healthz 200" in line and fresh in line for line in lines_of(log.read_text(), "gateway")), timeout=5)

    text = log.read_text()
    assert "Traceback" not in text, text
    assert "WARNING" not in "\n".join(line for line in text.splitlines() if "req-" in line)
    assert "Eventlet is deprecated" not in text and "DeprecationWarning" not in text, text
    assert stop_group(process) < 3


@pytest.mark.slow
@pytest.mark.parametrize("dev_env", [{"LOG_FORMAT": "json"}], indirect=True)
def test_log_format_json_makes_every_process_write_json_lines(dev_stack):
    process, base, log = dev_stack
    wait_ready(process, base, log)
    assert sign_up(base, "jsonuser", headers={"X-Request-Id": "req-json-1"}).status_code == 201
    requests.get(f"{base}/rest/v2/things/lookup", params={"url": "https://nobody.example/"}, headers={"X-Request-Id": "req-json-2"})
    eventually(lambda: "req-json-2" in log.read_text(), timeout=5)
    # every process has said something (a busy machine starts the last ones late) before the stop
    assert eventually(lambda: all(lines_of(log.read_text(), name) for name in SERVICES), timeout=20)
    assert stop_group(process) < 3

    entries: dict[str, list[dict]] = {}
    for name in SERVICES:
        for text in lines_of(log.read_text(), name):
            entry = json.loads(text)  # every line a process writes is one JSON object
            assert {"time", "process", "level", "logger", "message"} <= entry.keys(), entry
            entries.setdefault(name, []).append(entry)
    assert sorted(entries) == sorted(SERVICES)
    access = [e for e in entries["gateway"] if e["logger"] == "gateway.access" and e.get("request_id") == "req-json-2"]
    assert len(access) == 1
    assert access[0]["method"] == "GET" and access[0]["route"] == "/rest/v2/things/lookup" and access[0]["status"] == 404
    assert isinstance(access[0]["duration_ms"], float)
    miss = [e for e in entries["accounts"] if e.get("request_id") == "req-json-2"]
    assert len(miss) == 1 and miss[0]["level"] == "INFO" and "traceback" not in miss[0], miss
    assert all(e["process"] == "accounts" for e in entries["accounts"])
