"""What the gateway must be given before it serves anyone: its secrets and its public address.

Outside development the gateway refuses to start (``UnsafeSettings``, with every problem named)
when ``FLATTR_SECRET_KEY`` is missing, short or a placeholder, when ``FLATTR_ADMIN_TOKEN`` is set
but short or a placeholder (unset, the admin endpoints are off), or when ``FLATTR_PUBLIC_URL`` is
missing or not an http(s) base address: every link it writes (``Location`` headers, ``resource``
and ``link`` fields, the auto-submit address) is built from that address, never from the
request's ``Host`` header, which whoever sends the request chooses.

``FLATTR_DEVELOPMENT=on`` lets it start anyway, for a machine of one's own: a missing secret key
becomes a random one per process, and links point at ``http://127.0.0.1:GATEWAY_PORT``.
``make dev`` needs no such flag: it makes strong secrets and names its own address.
"""
from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from services.common import settings

log = logging.getLogger(__name__)

MIN_SECRET_LENGTH = 32
MIN_DISTINCT_CHARACTERS = 10
# what example files and tutorials put where a secret goes
PLACEHOLDERS = (
    "changeme", "change-me", "change_me", "replace_me", "replace-me", "replaceme",
    "dev-only", "placeholder", "example", "your-", "insecure", "xxxxxx",
)


class UnsafeSettings(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("the gateway will not start: " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class GatewayConfig:
    secret_key: str
    admin_token: str | None  # None: the admin endpoints are off
    public_url: str  # no trailing slash
    development: bool

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")


def weakness(value: str) -> str | None:
    """Why ``value`` cannot be a secret, or None."""
    if len(value) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    lowered = value.lower()
    if any(word in lowered for word in PLACEHOLDERS):
        return "is a placeholder"
    if len(set(value)) < MIN_DISTINCT_CHARACTERS:
        return "is too repetitive to be random"
    return None


def public_url_problem(value: str) -> str | None:
    try:
        parts = urlsplit(value)
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment or parts.username:
        return "must be the platform's http(s) base address, such as https://flattr.example.org"
    return None


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("on", "1", "true", "yes")


def load(overrides: Mapping | None = None, environ: Mapping | None = None) -> GatewayConfig:
    """The gateway's settings (``overrides`` first, then ``environ`` or the process environment),
    or UnsafeSettings naming every problem."""
    overrides = overrides or {}

    def value(name: str, override: str | None = None) -> str:
        given = overrides.get(override or name)
        if given is not None:
            return str(given)
        return settings.get(name, None if environ is None else dict(environ)) or ""

    development = _flag(value("FLATTR_DEVELOPMENT"))
    problems, warnings = [], []
    secret_key = value("FLATTR_SECRET_KEY", "SECRET_KEY")
    if not secret_key:
        (warnings if development else problems).append("FLATTR_SECRET_KEY is not set")
    elif weakness(secret_key):
        (warnings if development else problems).append(f"FLATTR_SECRET_KEY {weakness(secret_key)}")
    admin_token = value("FLATTR_ADMIN_TOKEN") or None
    if admin_token and weakness(admin_token):
        (warnings if development else problems).append(f"FLATTR_ADMIN_TOKEN {weakness(admin_token)} (or leave it unset: no admin endpoints)")
    public_url = value("FLATTR_PUBLIC_URL").rstrip("/")
    if not public_url:
        if development:
            public_url = f"http://127.0.0.1:{value('GATEWAY_PORT')}"
        else:
            problems.append("FLATTR_PUBLIC_URL is not set: links are built from it, never from the request's Host header")
    elif public_url_problem(public_url):
        problems.append(f"FLATTR_PUBLIC_URL {public_url_problem(public_url)}")
    if problems:
        raise UnsafeSettings(problems + ["set FLATTR_DEVELOPMENT=on to start anyway on a machine of your own"])
    for warning in warnings:
        log.warning("development: %s", warning)
    if not secret_key:
        secret_key = secrets.token_urlsafe(32)  # sessions last as long as this process
    return GatewayConfig(secret_key, admin_token, public_url, development)
