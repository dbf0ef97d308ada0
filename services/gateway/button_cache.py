"""The button's counts: a short-lived per-process cache of what the iframe and the badge show.

A hit costs no RPC and serves bytes rendered once (``Entry.html``, ``Entry.svg``, with their
WSGI headers), so ``services.gateway.button_fast_path`` can answer it without Flask. An entry
lasts ``BUTTON_CACHE_SECONDS`` (default 3); a thing that does not exist is remembered only for a
moment (read-your-writes for new things), and a click through the flattr window drops the
thing's entry at once (``invalidate``).
"""
from __future__ import annotations

import math
import threading
import time

from services.common.paging import MAX_ID
from services.gateway.rpc import ServiceUnavailable

MISSING_TTL = 0.5  # seconds a "no such thing" is remembered: never long, a new thing must show at once
MAX_ENTRIES = 50_000

Rendered = tuple[bytes, list]  # a 200's body and its WSGI headers


class Entry:
    """What the button shows for one thing, and the bytes rendered from it (filled on first use)."""

    __slots__ = ("expires", "flattrs", "found", "html", "svg", "thing_id", "title", "url")

    def __init__(self, thing_id: int, found: bool, title: str = "", url: str = "", flattrs: int = 0, expires: float = 0.0):
        self.thing_id, self.found, self.title, self.url = thing_id, found, title, url
        self.flattrs, self.expires = flattrs, expires
        self.html: Rendered | None = None
        self.svg: Rendered | None = None


def rendered(body: bytes, content_type: str, csp: str, cache_control: str, *extra) -> Rendered:
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", cache_control),
        ("Content-Security-Policy", csp),
        *extra,
    ]
    return body, headers


class ButtonCache:
    """Per-process: thing id -> Entry until it expires. Reads take no lock (a dict read is atomic);
    writes do. When an entry expires, one thread reloads it while the others keep showing the
    expired count for those few milliseconds (no burst of RPCs for a popular button). An entry
    loaded while the thing was invalidated (a click in between) is not stored, so a click's new
    count is never overwritten by an older read."""

    def __init__(self, ttl: float, rpc):
        self.ttl = max(0.0, ttl)
        self.rpc = rpc
        self.cache_control = f"public, max-age={max(1, math.ceil(self.ttl))}"
        self._entries: dict[int, Entry] = {}
        self._versions: dict[int, int] = {}
        self._loading: set[int] = set()
        self._lock = threading.Lock()

    def get(self, thing_id: int) -> Entry:
        entry = self._entries.get(thing_id)
        if entry is not None and entry.expires > time.monotonic():
            return entry
        with self._lock:
            if entry is not None and entry.found and thing_id in self._loading:
                return entry  # another thread is reloading it right now
            self._loading.add(thing_id)
            version = self._versions.get(thing_id, 0)
        try:
            fresh = self._load(thing_id)
        except ServiceUnavailable:
            if entry is not None and entry.found:
                return entry  # a stale count beats an error in someone else's page
            raise
        finally:
            with self._lock:
                self._loading.discard(thing_id)
        with self._lock:
            if self._versions.get(thing_id, 0) == version:
                if len(self._entries) >= MAX_ENTRIES:
                    self._prune()
                self._entries[thing_id] = fresh
        return fresh

    def peek(self, thing_id: int) -> Entry | None:
        """The entry if it is fresh, without loading anything."""
        entry = self._entries.get(thing_id)
        return entry if entry is not None and entry.expires > time.monotonic() else None

    def invalidate(self, thing_id: int) -> None:
        with self._lock:
            self._entries.pop(thing_id, None)
            self._versions[thing_id] = self._versions.get(thing_id, 0) + 1
            if len(self._versions) >= MAX_ENTRIES:
                self._versions.clear()  # a load that straddles this clear may store one old count for one TTL

    def _prune(self) -> None:
        now = time.monotonic()
        for key in [k for k, e in self._entries.items() if e.expires <= now]:
            del self._entries[key]
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()

    def _load(self, thing_id: int) -> Entry:
        things = self.rpc.call("accounts", "get_things", [thing_id]) if thing_id <= MAX_ID else []
        now = time.monotonic()
        if not things:
            return Entry(thing_id, False, expires=now + min(self.ttl, MISSING_TTL))
        thing = things[0]
        counts = self.rpc.call("clicks", "counts", [thing_id], None)
        flattrs = int((counts.get(str(thing_id)) or {}).get("flattrs") or 0)
        return Entry(thing_id, True, thing["title"], thing["url"], flattrs, expires=now + self.ttl)
