"""Rules about things that the HTTP contract fixes and more than one service applies."""
from __future__ import annotations

from urllib.parse import urlsplit


def title_from_url(url: str) -> str:
    """The title of a thing created by flattring a bare URL: its host and path, no fetching
    (HTTP_API.md). Titles have at least 5 characters, so a very short one is marked a link."""
    parts = urlsplit(url)
    title = (parts.hostname or "") + (parts.path if parts.path not in ("", "/") else "")
    if len(title) < 5:
        title = (title + " (link)")[:100]
    return title[:100]
