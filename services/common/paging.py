"""Ids and pages as every list and lookup of the API takes them."""
from __future__ import annotations

from services.common.errors import InvalidParameters

# ids are PostgreSQL bigints: a larger number names nothing and must not reach a query
MAX_ID = 2**63 - 1
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 30


def is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


def page_and_count(page, count) -> tuple[int, int]:
    """``page`` (from 1) and ``count`` (1 to ``MAX_PAGE_SIZE``), as given by a client (integers or
    their text; missing, empty or 0 means the default, as Flattr's clients expect); ``InvalidParameters`` otherwise."""
    if isinstance(page, bool) or isinstance(count, bool):
        raise InvalidParameters("page and count must be integers")
    try:
        page = int(page or 1)
        count = int(count or DEFAULT_PAGE_SIZE)
    except (TypeError, ValueError):
        raise InvalidParameters("page and count must be integers") from None
    if page < 1 or not 1 <= count <= MAX_PAGE_SIZE:
        raise InvalidParameters(f"page starts at 1 and count is 1 to {MAX_PAGE_SIZE}")
    return page, count


def offset(page: int, count: int) -> int:
    return (page - 1) * count
