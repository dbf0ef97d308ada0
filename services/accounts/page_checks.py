"""The two ownership checks, as plain functions (no broker, no database): does a page name the
user, does a host. Each returns quietly when it passes and raises ``ClaimRefused`` with a short
reason when it does not. They fetch (``page_fetch``) and parse (``page_marks``), so they take
seconds: the service runs them only on its verification pool (``verification_pool``)."""
from __future__ import annotations

from services.accounts import page_fetch, page_marks
from services.common.errors import ClaimRefused

# seconds a page's parse may take (in a child process; see page_marks)
PARSE_SECONDS = 2
WELL_KNOWN_PATH = "/.well-known/flattr"
WELL_KNOWN_TYPES = frozenset({"text/plain", "application/octet-stream"})
MAX_WELL_KNOWN_LINES = 100


def page_marks_of(url: str, rules: page_fetch.Rules) -> page_marks.Marks:
    page = page_fetch.fetch(url, rules)
    try:
        return page_marks.read_marks(page.text, page.url, PARSE_SECONDS)
    except page_marks.Unreadable:
        raise ClaimRefused(f"could not read {url}: the page could not be parsed in time") from None


def check_page(url: str, username: str, rules: page_fetch.Rules) -> None:
    """The page at ``url`` names ``username`` in its head."""
    if not page_marks_of(url, rules).names(username):
        raise ClaimRefused(f"no payment link or flattr:owner meta naming you was found at {url}")


def well_known_names(text: str) -> set[str]:
    """The usernames a ``/.well-known/flattr`` file names: one a line, blank lines and lines
    starting with ``#`` skipped."""
    lines = [line.strip() for line in text.splitlines()[:MAX_WELL_KNOWN_LINES]]
    return {line for line in lines if line and not line.startswith("#")}


def host_base(host: str, rules: page_fetch.Rules) -> str:
    # under the test setting hosts are local servers speaking plain http
    return f"{'http' if rules.allow_private else 'https'}://{host}"


def check_host(host: str, username: str, rules: page_fetch.Rules) -> str:
    """``host`` (a host key, see ``sites``) is the user's: ``/.well-known/flattr`` names them, or
    the head of its root page does. Returns which (``"well-known"`` or ``"root page"``)."""
    base = host_base(host, rules)
    try:
        text = page_fetch.fetch(base + WELL_KNOWN_PATH, rules, media_types=WELL_KNOWN_TYPES).text
        if username in well_known_names(text):
            return "well-known"
        first = f"{base}{WELL_KNOWN_PATH} does not name you"
    except ClaimRefused as exc:
        first = exc.description
    try:
        check_page(base + "/", username, rules)
    except ClaimRefused as exc:
        raise ClaimRefused(f"{first}; {exc.description}") from None
    return "root page"
