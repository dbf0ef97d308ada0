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

from nameko.rpc import Rpc
from sqlalchemy.exc import DBAPIError, OperationalError

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


class DeadlineRpc(Rpc):
    """nameko's RPC entrypoint, dropping calls whose caller gave up before they were picked up."""

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
