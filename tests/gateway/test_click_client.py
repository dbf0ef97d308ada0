"""The gateway's click client retires a publishing connection that a click got no answer on."""
import pytest

from services.gateway.clicks import ClickClient
from services.gateway.rpc import ServiceUnavailable

NO_SUCH_THING = 999_999_999


def answered(client: ClickClient) -> dict:
    """A click on a thing nobody knows: the worker answers it (``not_found``, or ``unavailable``
    with no accounts service to ask), so the answer came back."""
    answer = client.flattr(1, NO_SUCH_THING)
    assert answer["status"] in ("not_found", "unavailable"), answer
    return answer


def test_a_click_left_unanswered_retires_the_connection_it_went_out_on(amqp_uri, start_click_worker):
    """On RabbitMQ before 4.2 a channel that published to a quorum queue during a partition may
    swallow every later message (see ``ClickClient._abandon_publisher``); here no worker answers
    the first click. The next click goes out on a new connection and is answered; an answered
    click keeps its connection."""
    client = ClickClient(amqp_uri, timeout=2)
    try:
        with pytest.raises(ServiceUnavailable):
            client.flattr(1, NO_SUCH_THING)  # no click worker yet
        unanswered_on = client._publisher[0]
        start_click_worker()
        answered(client)
        answered_on = client._publisher[0]
        assert answered_on is not unanswered_on
        answered(client)
        assert client._publisher[0] is answered_on
    finally:
        client.close()
