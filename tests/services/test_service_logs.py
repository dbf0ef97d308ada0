"""What a service's log says about the calls it answers, as an operator reads it: an expected
error is one INFO line, an unexpected one is logged once with its traceback, and both carry the
caller's request id."""
import io
import json
import logging

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import logs
from services.common.errors import NotFound
from services.common.rpc import rpc


class LoggingProbe:
    name = "log_probe"

    @rpc
    def missing(self):
        logging.getLogger("log_probe").info("looking it up")
        raise NotFound("no thing has this url")

    @rpc
    def broken(self):
        raise RuntimeError("a bug")


@pytest.fixture
def log_stream(monkeypatch, request):
    monkeypatch.setenv("LOG_FORMAT", getattr(request, "param", "text"))
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    logs.configure("log_probe", stream=stream)
    yield stream
    handlers, level = saved
    root.handlers[:] = handlers
    root.setLevel(level)


def call(amqp_uri, method, request_id):
    with ClusterRpcProxy({"AMQP_URI": amqp_uri, "serializer": "json"}, context_data={"request_id": request_id}, timeout=10) as proxy:
        with pytest.raises(Exception) as raised:
            getattr(proxy.log_probe, method)()
    return raised.value


def test_expected_error_is_one_info_line_and_unexpected_one_traceback(start_services, amqp_uri, log_stream):
    logs.attach(LoggingProbe)
    start_services(LoggingProbe)
    assert isinstance(call(amqp_uri, "missing", "req-a"), NotFound)
    call(amqp_uri, "broken", "req-b")
    text = log_stream.getvalue()

    mine = [line for line in text.splitlines() if "request_id=req-a" in line]
    assert len(mine) == 2, text  # the method's own line, and the answer
    assert "log_probe INFO log_probe: looking it up request_id=req-a" in mine[0]
    assert " INFO nameko.containers: log_probe.missing answered NotFound: no thing has this url request_id=req-a" in mine[1]
    assert text.count("Traceback") == 1 and "RuntimeError: a bug" in text
    broken = [line for line in text.splitlines() if "request_id=req-b" in line]
    assert len(broken) == 1 and " ERROR " in broken[0], text


@pytest.mark.parametrize("log_stream", ["json"], indirect=True)
def test_json_lines_carry_the_request_id_and_the_traceback(start_services, amqp_uri, log_stream):
    logs.attach(LoggingProbe)
    start_services(LoggingProbe)
    call(amqp_uri, "missing", "req-c")
    call(amqp_uri, "broken", "req-d")
    entries = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    answered = [e for e in entries if e.get("request_id") == "req-c" and e["logger"] == "nameko.containers"]
    assert [e["level"] for e in answered] == ["INFO"] and "traceback" not in answered[0]
    failed = [e for e in entries if e.get("request_id") == "req-d"]
    assert len(failed) == 1 and failed[0]["level"] == "ERROR" and "RuntimeError: a bug" in failed[0]["traceback"]
    assert all(e["process"] == "log_probe" for e in entries)
