"""Period ids: short URL-safe strings, ``2026-11`` for a month and ``2026-11.2`` for a second
period begun in the same month (HTTP_API.md)."""
from __future__ import annotations

import re

PERIOD_ID = re.compile(r"[0-9]{4}-[0-9]{2}(\.[0-9]{1,8})?")


def is_period_id(value) -> bool:
    return isinstance(value, str) and PERIOD_ID.fullmatch(value) is not None
