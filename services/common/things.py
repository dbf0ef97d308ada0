"""Rules about things and users that the HTTP contract fixes and more than one service applies:
usernames, URLs, auto-submit links, subscription lengths, token names and bare-URL titles."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import parse_qs, urlencode, urlsplit

USERNAME = re.compile(r"[a-z0-9_-]{3,32}")
USERNAME_RULE = "3 to 32 characters of a-z, 0-9, _ and -"
MAX_URL = 2000
TITLE_LENGTH = (5, 100)
# a subscription runs for this many periods, or until cancelled
SUBSCRIPTION_LENGTHS = (3, 6, 12)
MAX_TOKEN_NAME = 100
# the optional fields an auto-submit link may carry beside user_id and url
AUTO_SUBMIT_FIELDS = ("title", "description", "language", "tags", "category", "hidden")
MAX_AUTO_SUBMIT_FIELD = 1000


def is_username(value) -> bool:
    return isinstance(value, str) and USERNAME.fullmatch(value) is not None


def is_web_url(value) -> bool:
    """An http(s) address with a host, of at most ``MAX_URL`` characters."""
    if not isinstance(value, str) or not value or len(value) > MAX_URL or "\x00" in value:
        return False
    try:
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def title_from_url(url: str) -> str:
    """The title of a thing created by flattring a bare URL: its host and path, no fetching
    (HTTP_API.md). Titles have at least 5 characters, so a very short one is marked a link."""
    parts = urlsplit(url)
    title = (parts.hostname or "") + (parts.path if parts.path not in ("", "/") else "")
    if len(title) < TITLE_LENGTH[0]:
        title = (title + " (link)")[: TITLE_LENGTH[1]]
    return title[: TITLE_LENGTH[1]]


@dataclass(frozen=True)
class AutoSubmit:
    """What an auto-submit link (``/submit/auto?user_id=U&url=URL&title=...``) asks for: the thing
    at ``url``, owned by ``username``, with the optional ``fields`` as the link gave them (text)."""

    username: str
    url: str
    fields: dict

    def query(self) -> str:
        return urlencode({"user_id": self.username, "url": self.url, **self.fields})


class BadAutoSubmit(ValueError):
    """The link is an auto-submit link, but not a valid one; the message says why."""


def auto_submit_from_query(query: Mapping[str, str]) -> AutoSubmit:
    """The auto-submit request in a link's query (one value per name); ``BadAutoSubmit`` says what is wrong."""
    user = (query.get("user_id") or "").strip()
    url = (query.get("url") or "").strip()
    if not user or not url:
        raise BadAutoSubmit("an auto-submit link needs user_id (a username) and url")
    if not is_username(user):
        raise BadAutoSubmit(f"user_id must be a username ({USERNAME_RULE})")
    if not is_web_url(url):
        raise BadAutoSubmit(f"url must be an http or https address of at most {MAX_URL} characters")
    fields = {}
    for name in AUTO_SUBMIT_FIELDS:
        value = query.get(name)
        if value:
            if "\x00" in value or len(value) > MAX_AUTO_SUBMIT_FIELD:
                raise BadAutoSubmit(f"{name} is not valid")
            fields[name] = value
    title = fields.get("title", "").strip()
    if title and not TITLE_LENGTH[0] <= len(title) <= TITLE_LENGTH[1]:
        raise BadAutoSubmit(f"title must be {TITLE_LENGTH[0]} to {TITLE_LENGTH[1]} characters")
    return AutoSubmit(username=user, url=url, fields=fields)


def auto_submit_from_url(url: str) -> AutoSubmit | None:
    """The auto-submit request an address makes, or None when it is not an auto-submit link
    (another path, or no user_id and url); ``BadAutoSubmit`` for a broken one."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.path.rstrip("/").endswith("/submit/auto"):
        return None
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    if not query.get("user_id") or not query.get("url"):
        return None
    return auto_submit_from_query(query)
