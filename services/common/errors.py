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
class ClaimRefused(Forbidden):
    """A claim of a thing was refused: its page could not be fetched or does not name the caller."""

    code, status = "forbidden", 403


@deserialize_to_instance
class Conflict(DomainError):
    """The thing or account already exists; ``existing_id`` names the existing thing when known."""

    code, status = "conflict", 409

    def __init__(self, description: str = "", existing_id=None):
        # nameko sends exception arguments as strings, so the id comes back as "12" or "None"
        if existing_id in (None, "None", ""):
            existing_id = None
        else:
            existing_id = int(existing_id)
        super().__init__(description, existing_id)
        self.existing_id = existing_id


@deserialize_to_instance
class PaymentDeclined(DomainError):
    code, status = "payment_declined", 402


@deserialize_to_instance
class ProviderError(DomainError):
    code, status = "provider_error", 502


@deserialize_to_instance
class ThingOwner(DomainError):
    code, status = "thing_owner", 403


@deserialize_to_instance
class Subscribed(DomainError):
    code, status = "subscribed", 403


@deserialize_to_instance
class RateLimited(DomainError):
    """One user asked for too much of something costly for now (ownership checks): try later."""

    code, status = "rate_limit_exceeded", 403


@deserialize_to_instance
class Unavailable(DomainError):
    """The service's database (or another dependency) is not answering: try again shortly."""

    code, status = "service_unavailable", 503

