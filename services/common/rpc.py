"""``@rpc`` for service methods: domain errors are expected answers, not crashes.

nameko logs an unexpected exception with a traceback at ERROR; a validation error or a 404 is
part of the contract, so it is declared expected and logged briefly.
"""
from nameko.rpc import rpc as _nameko_rpc

from services.common.errors import DomainError


def rpc(fn=None, **kwargs):
    kwargs.setdefault("expected_exceptions", DomainError)
    if fn is None:
        return _nameko_rpc(**kwargs)
    return _nameko_rpc(**kwargs)(fn)
