"""``@rpc`` for service methods: domain errors are expected answers, not crashes; late calls are dropped.

nameko logs an unexpected exception with a traceback at ERROR; a validation error or a 404 is
part of the contract, so it is declared expected and logged briefly. A database that does not
answer becomes ``Unavailable`` (the gateway's 503), not a remote crash (its 500).

A call carries its caller's deadline (Unix time, context data ``deadline``) and request id
(``request_id``). A call whose deadline passed while it waited in the queue is acknowledged and
dropped, not carried out: its caller has already answered 503, and the work would only delay the
calls behind it.
"""
import functools
import logging
import time

from nameko.rpc import Rpc, RpcConsumer
from sqlalchemy.exc import DBAPIError, OperationalError

from services.common import broker
from services.common.errors import DomainError, Unavailable

log = logging.getLogger(__name__)

DEADLINE_HEADER = "nameko.deadline"
REQUEST_ID_HEADER = "nameko.request_id"


def expired(deadline, now: float | None = None) -> bool:
    """Whether a caller's deadline (Unix seconds, or None for none) has passed."""
    try:
        return deadline is not None and float(deadline) < (time.time() if now is None else now)
    except (TypeError, ValueError):
        return False


def database_unavailable(exc: Exception) -> bool:
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def _unavailable_on_lost_database(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DBAPIError as exc:
            if database_unavailable(exc):
                raise Unavailable("the database is not answering; try again shortly") from exc
            raise

    return wrapper


class DurableRpcConsumer(RpcConsumer):
    """nameko's consumer of a service's ``rpc-<service>`` queue, declaring it with the arguments
    ``BROKER_QUEUE_TYPE`` asks for: a quorum queue on a cluster, so calls waiting for the service
    survive the loss of a node. Every ``@rpc`` of the platform uses it (nameko's own would
    declare the same queue without the arguments, and be refused)."""

    def setup(self):
        super().setup()
        self.queue.queue_arguments = broker.durable_queue_arguments(self.container.config)


def service_reply_queues_of_the_configured_type() -> None:
    """Process-wide, for service processes (``services.common.runner`` calls it): the reply queue
    of each container's ``RpcProxy`` (``rpc.reply-<service>-<uuid>``) is declared with the
    arguments ``BROKER_QUEUE_TYPE`` asks for, besides nameko's five-minute expiry.

    nameko declares it durable and classic, so it lives on one node of a cluster. Once that node
    is gone, every reconnection of the container's consumer (which serves its RPC entrypoints
    too) fails on declaring it (``NOT_FOUND - home node ... is down``) until the node is back: the
    whole service stops answering. As a quorum queue it survives the node, and so do the replies
    in it, which a caller without a timeout would otherwise wait for for ever. (The gateway's and
    the click worker's standalone proxies keep classic reply queues: a call that loses its reply
    ends at its deadline, and the proxy is replaced, with a queue of a new name.)"""
    from nameko.rpc import ReplyListener

    if getattr(ReplyListener.setup, "configured_type", False):
        return
    nameko_setup = ReplyListener.setup

    def setup(self):
        nameko_setup(self)
        self.queue.queue_arguments = {**(self.queue.queue_arguments or {}), **broker.durable_queue_arguments(self.container.config)}

    setup.configured_type = True
    ReplyListener.setup = setup


class DeadlineRpc(Rpc):
    """nameko's RPC entrypoint, dropping calls whose caller gave up before they were picked up."""

    rpc_consumer = DurableRpcConsumer()

    def handle_message(self, body, message):
        headers = message.headers or {}
        if expired(headers.get(DEADLINE_HEADER)):
            log.info(
                "dropped %s.%s: its caller gave up %.1f s ago (request %s)",
                self.container.service_name, self.method_name, time.time() - float(headers[DEADLINE_HEADER]),
                headers.get(REQUEST_ID_HEADER, "-"),
            )
            self.rpc_consumer.queue_consumer.ack_message(message)
            return
        super().handle_message(body, message)


def rpc(fn=None, **kwargs):
    kwargs.setdefault("expected_exceptions", DomainError)

    def decorate(f):
        return DeadlineRpc.decorator(**kwargs)(_unavailable_on_lost_database(f))

    return decorate if fn is None else decorate(fn)
