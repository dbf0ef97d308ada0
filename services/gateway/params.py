"""Reading request input the way Flattr clients send it: JSON or form bodies, loose booleans."""
from __future__ import annotations

import re

from flask import request

from services.gateway.errors import ApiError

# ASCII digits only: str.isdigit() also accepts superscripts that int() refuses
_INTEGER = re.compile(r"-?[0-9]{1,18}")
MAX_INTEGER = 10**15
_TRUE = {"true", "1", "True", "TRUE"}
_FALSE = {"false", "0", "False", "FALSE"}


def body() -> dict:
    """The request body as a dict: JSON object, or form fields; empty when there is no body."""
    if request.is_json or (request.content_type or "").startswith("application/json"):
        raw = request.get_data(cache=True)
        if not raw.strip():
            return {}
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_request", "the body must be a JSON object")
        return data
    if request.form:
        return {k: v for k, v in request.form.items()}
    raw = request.get_data(cache=True)
    if raw.strip():
        raise ApiError(400, "invalid_request", "send JSON (application/json) or a form (application/x-www-form-urlencoded)")
    return {}


def boolean(value, field: str):
    """``true``/``false``/``1``/``0``/``True``/``False`` (strings or JSON); None stays None."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
    raise ApiError(400, "invalid_parameters", f"{field} must be true or false")


def integer(value, field: str, *, default=None, minimum=None, maximum=None):
    if value is None or value == "":
        if default is None:
            raise ApiError(400, "invalid_parameters", f"{field} is required")
        return default
    if isinstance(value, bool):
        raise ApiError(400, "invalid_parameters", f"{field} must be an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise ApiError(400, "invalid_parameters", f"{field} must be an integer")
    if abs(number) > MAX_INTEGER:
        raise ApiError(400, "invalid_parameters", f"{field} is out of range")
    if minimum is not None and number < minimum:
        raise ApiError(400, "invalid_parameters", f"{field} must be at least {minimum}")
    if maximum is not None and number > maximum:
        raise ApiError(400, "invalid_parameters", f"{field} must be at most {maximum}")
    return number


def text(value, field: str, *, required=False):
    if value is None:
        if required:
            raise ApiError(400, "invalid_parameters", f"{field} is required")
        return None
    if not isinstance(value, str):
        raise ApiError(400, "invalid_parameters", f"{field} must be a string")
    return clean(value, field)


def clean(value: str, field: str) -> str:
    """Text the database can store: no NUL characters, no lone UTF-16 surrogates."""
    if "\x00" in value:
        raise ApiError(400, "invalid_parameters", f"{field} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "invalid_parameters", f"{field} is not valid text") from None
    return value


def paging() -> tuple[int, int]:
    page = integer(request.args.get("page"), "page", default=1, minimum=1, maximum=100000)
    count = integer(request.args.get("count"), "count", default=30, minimum=1, maximum=100)
    return page, count
