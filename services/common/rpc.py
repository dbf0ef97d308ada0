"""``@rpc`` for service methods: domain errors are expected answers, not crashes.

nameko logs an unexpected exception with a traceback at ERROR; a validation error or a 404 is
part of the contract, so it is declared expected and logged briefly. A database that does not
answer becomes ``Unavailable`` (the gateway's 503), not a remote crash (its 500).
"""
import functools

from nameko.rpc import rpc as _nameko_rpc
from sqlalchemy.exc import DBAPIError, OperationalError

from services.common.errors import DomainError, Unavailable


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


def rpc(fn=None, **kwargs):
    kwargs.setdefault("expected_exceptions", DomainError)

    def decorate(f):
        return _nameko_rpc(**kwargs)(_unavailable_on_lost_database(f))

    return decorate if fn is None else decorate(fn)
