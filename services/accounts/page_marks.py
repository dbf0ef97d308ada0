"""The owner marks of a web page: what in its ``<head>`` names a user of the platform.

Only two elements count, and only as direct children of the document's ``<head>`` as an HTML5
parser (and so a browser) builds it:

- ``<link rel="payment" href="<an auto-submit URL with user_id=USERNAME>">``
- ``<meta name="flattr:owner" content="USERNAME">``

A mark inside an attribute value, a comment, a script, a template, or anywhere in the body does
not count: a comment form that lets a visitor post text onto the page cannot claim it.

The page is parsed by selectolax (the Lexbor engine, a C implementation of the HTML5 parsing
algorithm). Its work grows with the page, but some hostile inputs (tens of thousands of distinct
attributes on one tag, tags nested tens of thousands deep) make any HTML5 tree builder
quadratic, and a C parser neither yields to eventlet nor can be interrupted. So the service never
parses in its own process: ``read_marks`` hands the page to a child process (``python -m
services.accounts.page_marks``, kept for the next page) with a deadline and a memory cap; a child
that misses the deadline is killed and the page refused. The parse itself reads only as much of
the page as it takes for the head to end (a prefix first, the whole page only if its head runs
past it), so a hostile body costs next to nothing.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urljoin, urlsplit

# a head that ends within this many characters is read from this prefix alone
HEAD_PREFIX = 16 * 1024
MAX_MARKS = 100  # marks kept per page: a real page has one or two


@dataclass
class Marks:
    payment_links: list[str] = field(default_factory=list)  # hrefs of <link rel="payment">, resolved against the page URL
    owners: list[str] = field(default_factory=list)  # contents of <meta name="flattr:owner">

    def names(self, username: str) -> bool:
        """Whether the marks name ``username`` (usernames are stored lowercase: compared exactly)."""
        return username in self.owners or any(names_user(href, username) for href in self.payment_links)


def names_user(href: str, username: str) -> bool:
    """Whether ``href`` is an auto-submit URL (path ending in /submit/auto) with ``user_id=username``."""
    try:
        parts = urlsplit(href)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.path.rstrip("/").endswith("/submit/auto"):
        return False
    return username in parse_qs(parts.query).get("user_id", [])


def _ascii_lower(value: str) -> str:
    # HTML compares these names ASCII case-insensitively; str.lower() would also fold non-ASCII
    return "".join(c.lower() if c.isascii() else c for c in value)


def _head_marks(tree, base_url: str) -> Marks:
    marks = Marks()
    head = tree.head
    if head is None:
        return marks
    for node in head.iter():
        if len(marks.payment_links) + len(marks.owners) >= MAX_MARKS:
            break
        attributes = node.attributes
        if node.tag == "link" and "payment" in _ascii_lower(attributes.get("rel") or "").split():
            href = (attributes.get("href") or "").strip()
            if href:
                try:
                    marks.payment_links.append(urljoin(base_url, href))
                except ValueError:
                    pass
        elif node.tag == "meta" and _ascii_lower((attributes.get("name") or "").strip()) == "flattr:owner":
            marks.owners.append((attributes.get("content") or "").strip())
    return marks


def _body_started(tree) -> bool:
    """Whether the parser reached the body: then nothing later in the page can add to the head."""
    body = tree.body
    return body is not None and body.child is not None


def find_marks(html: str, base_url: str) -> Marks:
    """The marks in the head of ``html`` (in this process: see ``read_marks`` for the service)."""
    from selectolax.lexbor import LexborHTMLParser

    if len(html) > HEAD_PREFIX:
        # Cutting the page only ends what is open (a tag, a comment, a script) at the cut: it
        # never turns text into a tag, so what the prefix's head holds is what the page's holds
        # once the body has begun within the prefix.
        tree = LexborHTMLParser(html[:HEAD_PREFIX])
        if _body_started(tree):
            return _head_marks(tree, base_url)
    return _head_marks(LexborHTMLParser(html), base_url)


class Unreadable(Exception):
    """The page could not be parsed within the limits."""


class _Reader:
    """A child process that parses pages sent to it, one at a time: ``[url length] [html
    length]\n``, the URL, the HTML (UTF-8); it answers one JSON line of marks. Its memory is
    capped (``MEMORY_LIMIT``); a parse that outlives its deadline gets the process killed."""

    def __init__(self):
        import subprocess
        from pathlib import Path

        import eventlet

        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.accounts.page_marks"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[2],
        )
        # the child says when it is ready: its start (a busy machine may take seconds to start
        # Python) is not counted in any page's deadline
        with eventlet.Timeout(STARTUP_SECONDS, False):
            if self.process.stdout.readline() == b"ready\n":
                return
        self.kill()
        raise Unreadable("the page reader did not start")

    def read(self, html: str, base_url: str) -> dict:
        url, body = base_url.encode(), html.encode("utf-8", errors="replace")
        self.process.stdin.write(f"{len(url)} {len(body)}\n".encode() + url + body)
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise Unreadable("the page could not be parsed")
        return json.loads(line)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


# readers waiting for work, kept for the next check (a process start costs more than a parse)
_idle: list[_Reader] = []
MAX_IDLE = 4
MEMORY_LIMIT = 1 << 30
STARTUP_SECONDS = 10


def read_marks(html: str, base_url: str, seconds: float) -> Marks:
    """``find_marks`` in a child process, within ``seconds``; ``Unreadable`` when it does not
    finish (the child is killed then, and a new one started for the next page)."""
    import eventlet

    reader = _idle.pop() if _idle else _Reader()  # may raise Unreadable: it did not start
    found = None
    try:
        with eventlet.Timeout(seconds, False):
            found = reader.read(html, base_url)
    except (OSError, ValueError, Unreadable):  # the child died (its memory limit): a new one next time
        found = None
    if found is None:
        reader.kill()
        raise Unreadable("the page could not be parsed in time")
    if len(_idle) < MAX_IDLE:
        _idle.append(reader)
    else:
        reader.kill()
    return Marks(payment_links=found["payment_links"], owners=found["owners"])


def _serve() -> None:
    """The child's loop: parse what comes on stdin until it closes (the service is gone)."""
    import resource

    # a hard bound on what a hostile page can take; past it the parse fails and the child ends
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    import selectolax.lexbor  # noqa: F401 - loaded before "ready", not during the first page

    source, out = sys.stdin.buffer, sys.stdout
    out.write("ready\n")
    out.flush()
    while True:
        header = source.readline()
        if not header:
            return
        url_length, html_length = (int(n) for n in header.split())
        base_url = source.read(url_length).decode()
        html = source.read(html_length).decode("utf-8", errors="replace")
        marks = find_marks(html, base_url)
        out.write(json.dumps({"payment_links": marks.payment_links, "owners": marks.owners}) + "\n")
        out.flush()


if __name__ == "__main__":
    _serve()
