"""Times as the Flattr resources give them: Unix seconds."""
from __future__ import annotations

from datetime import datetime


def unix(ts: datetime | None) -> int | None:
    return int(ts.timestamp()) if ts is not None else None
