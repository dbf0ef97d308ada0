"""Hosts and sites as ownership sees them.

A *host key* names where a thing lives and what a user verifies: the host name in ASCII (IDNA),
lowercase, without a trailing dot, and, only when the address names a port other than its
scheme's default, ``:port`` (which happens only under the ``CLAIM_ALLOW_PRIVATE_ADDRESSES`` test
setting, where pages are served on 127.0.0.1 and any port). A host covers exactly that host:
verifying ``example.com`` says nothing about ``blog.example.com``.

A *site* is a host's registrable domain by the public suffix list (``www.example.co.uk`` ->
``example.co.uk``; ``alice.github.io`` is a site of its own): redirects during a check may move
within a site, not out of it."""
from __future__ import annotations

import ipaddress
from functools import lru_cache
from urllib.parse import urlsplit

from services.common.errors import InvalidParameters

DEFAULT_PORTS = {"http": 80, "https": 443}


@lru_cache(maxsize=1)
def _suffixes():
    # the list ships inside the package (publicsuffixlist): nothing is fetched at run time
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def ascii_host(host: str) -> str | None:
    """The host name as DNS and the Host header take it (IDNA, lowercase); None if it has none."""
    host = host.rstrip(".").lower()
    if not host:
        return None
    try:
        return host if host.isascii() else host.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def registrable_domain(host: str) -> str | None:
    """``www.example.co.uk`` -> ``example.co.uk``; None for an address or a public suffix itself."""
    if is_ip(host):
        return None
    return _suffixes().privatesuffix(host.rstrip(".").lower())


def same_site(first: str, other: str) -> bool:
    """Whether ``other`` is ``first`` or shares its registrable domain (host names, ASCII)."""
    if first == other:
        return True
    site = registrable_domain(first)
    return site is not None and site == registrable_domain(other)


def _key(hostname: str | None, port: int | None, default_port: int | None) -> str | None:
    host = ascii_host(hostname or "")
    if host is None:
        return None
    if ":" in host:  # an IPv6 address keeps its brackets beside a port
        host = f"[{host}]"
    return host if port is None or port == default_port else f"{host}:{port}"


def host_of_url(url: str) -> str | None:
    """The host key of an http(s) address; None if it has no valid host."""
    try:
        parts = urlsplit(url)
        return _key(parts.hostname, parts.port, DEFAULT_PORTS.get(parts.scheme))
    except ValueError:
        return None


def parse_host(value, allow_private: bool) -> str:
    """The host key a user asks to verify (``blog.example``; ``127.0.0.1:8123`` only with
    ``allow_private``); ``InvalidParameters`` for anything else."""
    if not isinstance(value, str) or not value.strip() or len(value) > 300 or "\x00" in value:
        raise InvalidParameters("host must be a host name such as blog.example.com")
    text = value.strip()
    if any(c in text for c in "/?#@\\ "):
        raise InvalidParameters("host must be a host name such as blog.example.com, without a scheme or path")
    try:
        parts = urlsplit("//" + text)
        port = parts.port
    except ValueError:
        raise InvalidParameters("host is not a valid host name") from None
    if port is not None and not allow_private and port != 443:
        raise InvalidParameters("host must not name a port: hosts are verified over https on port 443")
    # hosts are read over https, or over http under the test setting (see ``page_checks``)
    key = _key(parts.hostname, port, 80 if allow_private else 443)
    if key is None or (not allow_private and not is_ip(key) and "." not in key):
        raise InvalidParameters("host is not a valid host name")
    return key
