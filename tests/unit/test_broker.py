"""How a process picks a node of a RabbitMQ cluster and which queue type it declares."""
import io
import logging

import pytest

from services.common import broker, logs

NODES = "amqp://u:secret@rabbit-1:5672/v;amqp://u:secret@rabbit-2:5673/v;amqp://u:secret@rabbit-3:5674/v"


@pytest.fixture
def fresh_suspects(monkeypatch):
    monkeypatch.setattr(broker, "_suspects", broker._Suspects())
    monkeypatch.setattr(broker, "_ROTATION", 0)


def test_the_nodes_of_a_failover_uri_in_their_order():
    assert broker.node_urls(NODES + ";") == NODES.split(";")
    assert broker.node_urls("amqp://guest:guest@127.0.0.1:5672//") == ["amqp://guest:guest@127.0.0.1:5672//"]
    with pytest.raises(ValueError):
        broker.node_urls(" ; ")


def test_a_process_starts_at_a_node_of_its_own(fresh_suspects, monkeypatch):
    urls = broker.node_urls(NODES)
    firsts = set()
    for rotation in range(3):
        monkeypatch.setattr(broker, "_ROTATION", rotation)
        ordered = broker.node_urls(broker.ordered_uri(NODES))
        assert sorted(ordered) == sorted(urls)
        firsts.add(ordered[0])
    assert firsts == set(urls)


def test_a_node_that_failed_lately_is_tried_last(fresh_suspects, monkeypatch):
    first, second, third = broker.node_urls(NODES)

    class KombuLike:  # a kombu connection names its current node by host and port
        hostname, port = "rabbit-1", 5672

    broker.node_lost(KombuLike(), NODES)
    assert broker.node_urls(broker.ordered_uri(NODES)) == [second, third, first]
    broker._suspects.mark(second)
    assert broker.node_urls(broker.ordered_uri(NODES)) == [third, first, second]
    # forgiven after a while
    monkeypatch.setattr(broker, "SUSPECT_SECONDS", 0.0)
    assert broker.node_urls(broker.ordered_uri(NODES)) == [first, second, third]


def test_connect_goes_on_to_the_next_node_and_says_which(fresh_suspects):
    # nothing listens on ports 1 and 2 of this machine: both are refused at once
    with pytest.raises(ConnectionError) as refused:
        broker.connect("amqp://guest:guest@127.0.0.1:1//;amqp://guest:guest@127.0.0.1:2//", connect_timeout=1)
    assert "127.0.0.1:1" in str(refused.value) and "127.0.0.1:2" in str(refused.value)


def test_kombu_gives_each_node_its_own_connect_timeout(fresh_suspects):
    conn = broker.kombu_connection(NODES, connect_timeout=4, confirm_publish=True)
    assert conn.connect_timeout == 4
    assert conn.transport_options["connect_retries_timeout"] == 13
    assert conn.transport_options["confirm_publish"] is True
    assert [conn.hostname] + conn.alt[1:] == ["rabbit-1", *broker.node_urls(NODES)[1:]]


@pytest.mark.parametrize("value, arguments", [("classic", {}), ("quorum", {"x-queue-type": "quorum"}), ("QUORUM", {"x-queue-type": "quorum"})])
def test_the_queue_type_setting(value, arguments, monkeypatch):
    monkeypatch.setenv("BROKER_QUEUE_TYPE", value)
    assert broker.durable_queue_arguments() == arguments
    # a service's container config wins over the environment
    assert broker.durable_queue_arguments({"BROKER_QUEUE_TYPE": "classic"}) == {}


def test_an_unknown_queue_type_is_refused(monkeypatch):
    monkeypatch.setenv("BROKER_QUEUE_TYPE", "mirrored")
    with pytest.raises(ValueError, match="classic, quorum"):
        broker.durable_queue_arguments()


def test_no_broker_password_reaches_the_log():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.TextFormatter("test"))
    messaging = logging.getLogger("nameko.messaging")
    messaging.addHandler(handler)
    masking = logs._BrokerPasswordsMasked()  # what logs.configure puts on this logger
    messaging.addFilter(masking)
    try:
        # what nameko logs when a consumer loses its connection: only the first password masked
        messaging.warning("Error connecting to broker at {} ({}).".format(NODES.replace("u:secret@rabbit-1", "u:********@rabbit-1", 1), "refused"))
    finally:
        messaging.removeHandler(handler)
        messaging.removeFilter(masking)
    written = stream.getvalue()
    assert "rabbit-3:5674" in written and "secret" not in written
