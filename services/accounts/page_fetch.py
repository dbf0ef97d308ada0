"""Fetching a page for an ownership check: safely, from anyone's URL.

Plain functions, no broker, no database. Fetching a URL that anyone can register is a
server-side request forgery risk, and the page belongs to whoever controls the URL, so the fetch:

- reads https only, on ports 80 and 443 only (an ``http://`` address is read at its ``https://``
  twin, on the same host and path);
- resolves the host once, refuses private, loopback, link-local, multicast, reserved,
  unspecified and other non-global addresses, and connects to the very address it checked: there
  is no second DNS look-up that a rebinding name server could answer differently. The TLS
  handshake still sends the host name (SNI) and the certificate is checked against it;
- follows at most ``MAX_REDIRECTS`` redirects, each checked like the first URL, and each staying
  on the first URL's host or its registrable domain (by the public suffix list: a redirect from
  ``alice.github.io`` to ``mallory.github.io`` leaves the site, one from ``example.com`` to
  ``www.example.com`` does not), so a page cannot hand its check to another site's page;
- keeps to one deadline for the whole fetch, redirects included (connect and every read get what
  is left of it);
- reads at most ``max_bytes`` of the body and refuses a larger answer; reads only the media types
  asked for (HTML for pages);
- answers a failure with a short reason of its own words: never text from the remote side (a
  header, a body, a certificate's names, a resolved address), so the check cannot be used to
  read what the platform's network can reach.

``Rules.allow_private`` (the ``CLAIM_ALLOW_PRIVATE_ADDRESSES`` test setting) lifts the address,
https and port rules, so tests and local demos can serve pages on 127.0.0.1.

Why the standard library (``http.client``, ``socket``, ``ssl``) and not requests/urllib3:
pinning the connection to the checked address while keeping SNI and certificate checks on the
host name takes one small ``connect`` override here, whereas with requests it needs a custom
transport adapter and urllib3 pool internals, and requests would also pick up proxy settings from
the environment (a proxy would make the address check meaningless).
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

import eventlet

from services.accounts.sites import ascii_host, same_site
from services.common.errors import ClaimRefused

MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"text/plain"})
ALLOWED_PORTS = frozenset({80, 443})
USER_AGENT = "flattr-claim-check/2 (+ownership verification)"
_CHUNK = 16 * 1024


@dataclass(frozen=True)
class Rules:
    timeout: float
    max_bytes: int
    allow_private: bool = False


def refused(reason: str) -> ClaimRefused:
    return ClaimRefused(f"could not fetch: {reason}")


# -- addresses ----------------------------------------------------------------------------------


_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: a site's own translators, never global
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # ::a.b.c.d (deprecated)
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # ::ffff:0:a.b.c.d (SIIT)


def _non_global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def address_refused(address: str) -> bool:
    """Whether a resolved address is one a check must not reach (without ``allow_private``).

    Anything that is not a plain public unicast address is refused: private, loopback,
    link-local, multicast, reserved, unspecified, shared (100.64/10) and documentation ranges. An
    IPv6 address that embeds an IPv4 address is judged by that IPv4 address too:

    - IPv4-mapped ``::ffff:a.b.c.d`` and NAT64 ``64:ff9b::a.b.c.d`` reach a.b.c.d, so they are
      judged by it alone (``::ffff:8.8.8.8`` and ``64:ff9b::8.8.8.8`` are allowed,
      ``64:ff9b::127.0.0.1`` is not);
    - the local-use NAT64 prefix ``64:ff9b:1::/48`` is refused whatever it embeds (where the IPv4
      address sits depends on the site's prefix length, and the prefix is never global);
    - 6to4 (``2002:a.b.c.d::/48``), Teredo clients and IPv4-compatible/translated addresses
      (``::a.b.c.d``, ``::ffff:0:a.b.c.d``) are refused if either the IPv6 address or the IPv4
      address inside it is.

    The checks do not rely on which of these ranges the running Python's ``ipaddress`` tables
    happen to call reserved or private.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64_WELL_KNOWN:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif ip in _NAT64_LOCAL_USE:
            return True
    candidates = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.sixtofour is not None:
            candidates.append(ip.sixtofour)
        if ip.teredo is not None:
            candidates.append(ip.teredo[1])
        if ip in _IPV4_COMPATIBLE or ip in _IPV4_TRANSLATED:
            candidates.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return any(_non_global(candidate) for candidate in candidates)


def resolve(host: str, port: int) -> list[str]:
    """The host's addresses (IPv4 and IPv6), in the resolver's order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        if sockaddr[0] not in seen:
            seen.append(sockaddr[0])
    return seen


# -- URLs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str  # ASCII (IDNA), lowercase
    port: int
    path: str  # path and query, as sent in the request line


def parse_target(url: str, allow_private: bool = False) -> Target:
    """The parts of an address a fetch needs, under the rules above; ClaimRefused otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise refused("the address is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise refused("only http and https addresses are read")
    if not parts.hostname:
        raise refused("the address names no host")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in path):
        raise refused("the address is not a valid URL")
    # the request line and the Host header are ASCII: percent-encode the path, IDNA-encode the host
    path = "".join(c if ord(c) < 0x80 else quote(c) for c in path)
    host = ascii_host(parts.hostname)
    if host is None:
        raise refused("the address names no valid host")
    scheme = parts.scheme
    if not allow_private:
        if port is not None and port not in ALLOWED_PORTS:
            raise refused("only ports 80 and 443 are read")
        if scheme == "http":  # read at its https twin
            scheme, port = "https", None if port in (None, 80) else port
    port = port or (443 if scheme == "https" else 80)
    return Target(url, scheme, host, port, path)


# -- fetching -----------------------------------------------------------------------------------


class _Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.ends = time.monotonic() + seconds

    def left(self) -> float:
        left = self.ends - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        return left


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to ``address`` for ``host``: the Host header names the host, the TCP
    connection goes to the address that was checked."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = 443

    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext):
        super().__init__(host, port, address, timeout)
        self._context = context

    def connect(self):
        super().connect()
        # SNI and the certificate check use the host name, not the address connected to
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


@dataclass(frozen=True)
class Page:
    url: str  # the address the page was read from, after redirects
    text: str


def _media_type(content_type: str | None) -> tuple[str, str]:
    """``("text/html", "utf-8")`` from a Content-Type header (charset defaults to utf-8)."""
    if not content_type:
        return "", "utf-8"
    media, *params = content_type.split(";")
    charset = "utf-8"
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"').lower()
    return media.strip().lower(), charset


def _decode(body: bytes, charset: str) -> str:
    try:
        return body.decode(charset, errors="replace")
    except LookupError:  # an unknown charset name
        return body.decode("utf-8", errors="replace")


def _open(target: Target, allow_private: bool, deadline: _Deadline, resolver, tls: ssl.SSLContext):
    """Connect to a checked address of the target and send the GET; returns (connection, response)."""
    try:
        addresses = resolver(target.host, target.port)
    except (socket.gaierror, UnicodeError):
        addresses = []
    if not addresses:
        raise refused(f"the host {target.host} does not resolve")
    allowed = addresses if allow_private else [a for a in addresses if not address_refused(a)]
    if not allowed:
        raise ClaimRefused(f"refusing to fetch a private address: {target.host} resolves to one")
    last_error: Exception | None = None
    for address in allowed:
        if target.scheme == "https":
            conn = _PinnedHTTPSConnection(target.host, target.port, address, deadline.left(), tls)
        else:
            conn = _PinnedHTTPConnection(target.host, target.port, address, deadline.left())
        try:
            conn.connect()
        except (ssl.SSLError, socket.timeout):
            conn.close()
            raise
        except OSError as exc:  # refused, unreachable: try the next address
            conn.close()
            last_error = exc
            continue
        try:
            conn.sock.settimeout(deadline.left())
            conn.putrequest("GET", target.path, skip_accept_encoding=True)
            conn.putheader("Accept", "text/html, application/xhtml+xml;q=0.9, text/plain;q=0.5")
            conn.putheader("Accept-Encoding", "identity")
            conn.putheader("User-Agent", USER_AGENT)
            conn.putheader("Connection", "close")
            conn.endheaders()
            conn.sock.settimeout(deadline.left())
            return conn, conn.getresponse()
        except BaseException:
            conn.close()
            raise
    raise last_error if last_error else refused("the connection failed")


def _read_body(conn, response, max_bytes: int, deadline: _Deadline) -> bytes:
    length = response.getheader("Content-Length")
    if length and length.strip().isdigit() and int(length.strip()) > max_bytes:
        raise ClaimRefused(f"page larger than {max_bytes} bytes")
    chunks, size = [], 0
    while True:
        if conn.sock is not None:
            conn.sock.settimeout(deadline.left())
        chunk = response.read(min(_CHUNK, max_bytes + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise ClaimRefused(f"page larger than {max_bytes} bytes")


def _next_target(first: Target, current: str, location: str | None, allow_private: bool) -> Target:
    if not location:
        raise refused(f"{first.url} answered a redirect without a Location")
    try:
        following = urljoin(current, location.strip())
    except ValueError:
        raise refused(f"{first.url} redirects to an invalid address") from None
    target = parse_target(following, allow_private)
    if not same_site(first.host, target.host):
        raise refused(f"{first.url} redirects to another site")
    return target


def fetch(url: str, rules: Rules, *, media_types=HTML_TYPES, resolver=resolve, tls: ssl.SSLContext | None = None) -> Page:
    """The document at ``url`` (one of ``media_types``), fetched under the rules above;
    ClaimRefused with the reason otherwise. ``resolver`` and ``tls`` (certificate checks on, the
    system's CAs by default) are for tests."""
    # the reads keep to the deadline; this is the backstop for what sockets cannot bound (a slow
    # name server, a server trickling its headers a byte at a time)
    backstop = eventlet.Timeout(rules.timeout + 0.5)
    try:
        return _fetch(url, rules, media_types, resolver, tls or ssl.create_default_context())
    except eventlet.Timeout as exc:
        if exc is not backstop:
            raise
        raise refused(f"timed out after {rules.timeout:g} seconds") from None
    finally:
        backstop.cancel()


def _fetch(url: str, rules: Rules, media_types, resolver, tls: ssl.SSLContext) -> Page:
    deadline = _Deadline(rules.timeout)
    first = target = parse_target(url, rules.allow_private)
    for redirects in range(MAX_REDIRECTS + 1):
        conn = None
        try:
            conn, response = _open(target, rules.allow_private, deadline, resolver, tls)
            if response.status in REDIRECT_STATUSES:
                if redirects == MAX_REDIRECTS:
                    raise refused(f"more than {MAX_REDIRECTS} redirects from {url}")
                target = _next_target(first, target.url, response.getheader("Location"), rules.allow_private)
                continue
            if not 200 <= response.status < 300:
                raise refused(f"{url} answered HTTP {response.status}")
            media, charset = _media_type(response.getheader("Content-Type"))
            if media not in media_types:
                kind = "an HTML page" if media_types == HTML_TYPES else "a text file"
                raise refused(f"{url} is not {kind}")
            body = _read_body(conn, response, rules.max_bytes, deadline)
            return Page(target.url, _decode(body, charset))
        except ClaimRefused:
            raise
        except socket.timeout:
            raise refused(f"timed out after {deadline.seconds:g} seconds") from None
        except ssl.SSLCertVerificationError:
            raise refused(f"the TLS certificate of {target.host} is not valid") from None
        except ssl.SSLError:
            raise refused("the TLS handshake failed") from None
        except ConnectionRefusedError:
            raise refused("connection refused") from None
        except http.client.HTTPException:
            raise refused(f"{url} did not answer in HTTP") from None
        except (OSError, ValueError):
            raise refused("the connection failed") from None
        finally:
            if conn is not None:
                conn.close()
    raise AssertionError("unreachable")
