"""Domain errors that cross the broker as themselves.

A service raises one of these; nameko serialises it; the gateway's RPC client gets the same
class back (``deserialize_to_instance``) and maps it to the HTTP answer in Flattr's error format.
Each error carries its Flattr code, so the mapping lives in one place.
"""
from nameko.exceptions import deserialize_to_instance


class DomainError(Exception):
    code = "invalid_request"
    status = 400

    def __init__(self, description: str = "", *extra):
        super().__init__(description, *extra)
        self.description = description


@deserialize_to_instance
class InvalidRequest(DomainError):
    code, status = "invalid_request", 400


@deserialize_to_instance
class InvalidParameters(DomainError):
    code, status = "invalid_parameters", 400


@deserialize_to_instance
class NotFound(DomainError):
    code, status = "not_found", 404


@deserialize_to_instance
class UserNotFound(DomainError):
    code, status = "user_not_found", 404


@deserialize_to_instance
class Unauthorized(DomainError):
    code, status = "unauthorized", 401


@deserialize_to_instance
class Forbidden(DomainError):
    code, status = "forbidden", 403


@deserialize_to_instance
class Conflict(DomainError):
    """The thing or account already exists. ``location`` names the existing resource when known."""

    code, status = "conflict", 409

    def __init__(self, description: str = "", location: str | None = None, existing_id: int | None = None):
        super().__init__(description, location, existing_id)
        self.location = location
        self.existing_id = existing_id


ALL = (InvalidRequest, InvalidParameters, NotFound, UserNotFound, Unauthorized, Forbidden, Conflict)
