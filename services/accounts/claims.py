"""Claim verification: fetch a thing's page safely and look for the caller's claim on it.

Plain functions, no broker, no database. The service calls ``verify_claim``; the parts are
public so they can be tested on their own.

Fetching a URL that anyone can register is a server-side request forgery risk, so the fetch:

- speaks http and https only;
- resolves the host once, refuses private, loopback, link-local, multicast, reserved,
  unspecified and other non-global addresses (unless ``allow_private``, for tests and demos), and
  connects to the very address it checked: there is no second DNS look-up that a rebinding
  name server could answer differently. For https the TLS handshake still sends the host name
  (SNI) and the certificate is checked against it;
- keeps to one deadline for the whole fetch, redirects included (connect and every read get
  what is left of it);
- reads at most ``max_bytes`` of the body and refuses a larger page;
- follows at most ``MAX_REDIRECTS`` redirects, each checked like the first URL;
- reads only HTML (``text/html`` or ``application/xhtml+xml``).

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
from html.parser import HTMLParser
from urllib.parse import parse_qs, quote, urljoin, urlsplit

from services.common.errors import ClaimRefused

MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
USER_AGENT = "flattr-claim-check/1 (+ownership verification)"
_CHUNK = 16 * 1024


# -- addresses ----------------------------------------------------------------------------------


def address_refused(address: str) -> bool:
    """Whether a resolved address is one a claim fetch must not reach (without ``allow_private``).

    Anything that is not a plain public unicast address is refused: private, loopback,
    link-local, multicast, reserved, unspecified, shared (100.64/10) and documentation ranges. An
    IPv6 address that maps or embeds an IPv4 address is judged by that IPv4 address too.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:a.b.c.d reaches a.b.c.d
    candidates = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        for embedded in (ip.sixtofour, ip.teredo[1] if ip.teredo else None):
            if embedded is not None:
                candidates.append(embedded)
    for candidate in candidates:
        if (
            candidate.is_private
            or candidate.is_loopback
            or candidate.is_link_local
            or candidate.is_multicast
            or candidate.is_reserved
            or candidate.is_unspecified
            or not candidate.is_global
        ):
            return True
    return False


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
    host: str
    port: int
    path: str  # path and query, as sent in the request line


def parse_target(url: str) -> Target:
    """The parts of an http(s) URL a fetch needs; ClaimRefused for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ClaimRefused(f"could not fetch: {url} is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ClaimRefused(f"could not fetch: only http and https URLs are fetched, not {url}")
    if not parts.hostname:
        raise ClaimRefused(f"could not fetch: {url} names no host")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in path):
        raise ClaimRefused(f"could not fetch: {url} is not a valid URL")
    # the request line and the Host header are ASCII: percent-encode the path, IDNA-encode the host
    path = "".join(c if ord(c) < 0x80 else quote(c) for c in path)
    host = parts.hostname
    try:
        host = host if host.isascii() else host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ClaimRefused(f"could not fetch: {url} names no valid host") from None
    return Target(url, parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path)


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
        raise ClaimRefused(f"could not fetch: the host {target.host} does not resolve") from None
    if not addresses:
        raise ClaimRefused(f"could not fetch: the host {target.host} does not resolve")
    allowed = addresses if allow_private else [a for a in addresses if not address_refused(a)]
    if not allowed:
        raise ClaimRefused(f"refusing to fetch a private address: {target.host} resolves to {addresses[0]}")
    last_error: Exception | None = None
    for address in allowed:
        if target.scheme == "https":
            conn = _PinnedHTTPSConnection(target.host, target.port, address, deadline.left(), tls)
        else:
            conn = _PinnedHTTPConnection(target.host, target.port, address, deadline.left())
        try:
            conn.connect()
        except ssl.SSLError:
            conn.close()
            raise
        except socket.timeout:
            conn.close()
            raise
        except OSError as exc:  # refused, unreachable: try the next address
            conn.close()
            last_error = exc
            continue
        try:
            conn.sock.settimeout(deadline.left())
            conn.putrequest("GET", target.path, skip_accept_encoding=True)
            conn.putheader("Accept", "text/html, application/xhtml+xml;q=0.9")
            conn.putheader("Accept-Encoding", "identity")
            conn.putheader("User-Agent", USER_AGENT)
            conn.putheader("Connection", "close")
            conn.endheaders()
            conn.sock.settimeout(deadline.left())
            return conn, conn.getresponse()
        except BaseException:
            conn.close()
            raise
    raise last_error if last_error else ClaimRefused(f"could not fetch {target.url}")


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


def fetch_page(
    url: str, *, timeout: float, max_bytes: int, allow_private: bool = False, resolver=resolve, tls: ssl.SSLContext | None = None
) -> Page:
    """The HTML page at ``url``, fetched under the rules above; ClaimRefused with the reason otherwise.
    ``resolver`` and ``tls`` (certificate checks on, the system's CAs by default) are for tests."""
    deadline = _Deadline(timeout)
    tls = tls or ssl.create_default_context()
    current = url
    for redirects in range(MAX_REDIRECTS + 1):
        target = parse_target(current)
        conn = None
        try:
            conn, response = _open(target, allow_private, deadline, resolver, tls)
            if response.status in REDIRECT_STATUSES:
                location = response.getheader("Location")
                if not location:
                    raise ClaimRefused(f"could not fetch: {current} answered a redirect without a Location")
                if redirects == MAX_REDIRECTS:
                    raise ClaimRefused(f"could not fetch: more than {MAX_REDIRECTS} redirects from {url}")
                current = urljoin(current, location.strip())
                continue
            if not 200 <= response.status < 300:
                raise ClaimRefused(f"could not fetch: {current} answered HTTP {response.status}")
            media, charset = _media_type(response.getheader("Content-Type"))
            if media not in HTML_TYPES:
                raise ClaimRefused(f"could not fetch: {current} is not an HTML page ({media or 'no content type'})")
            body = _read_body(conn, response, max_bytes, deadline)
            return Page(current, _decode(body, charset))
        except ClaimRefused:
            raise
        except socket.timeout:
            raise ClaimRefused(f"could not fetch: timed out after {deadline.seconds:g} seconds") from None
        except ssl.SSLCertVerificationError as exc:
            reason = f"the TLS certificate of {target.host} is not valid ({exc.verify_message})"
            raise ClaimRefused(f"could not fetch: {reason}") from None
        except ssl.SSLError as exc:
            raise ClaimRefused(f"could not fetch: TLS error ({exc.reason or exc})") from None
        except ConnectionRefusedError:
            raise ClaimRefused(f"could not fetch: connection refused by {target.host}") from None
        except (http.client.HTTPException, OSError, ValueError) as exc:
            raise ClaimRefused(f"could not fetch: {type(exc).__name__} {exc}".rstrip()) from None
        finally:
            if conn is not None:
                conn.close()
    raise AssertionError("unreachable")


# -- the claim on the page ------------------------------------------------------------------------


@dataclass
class ClaimMarks:
    payment_links: list[str]  # hrefs of <link rel="payment">, resolved against the page URL
    owners: list[str]  # contents of <meta name="flattr:owner">


class _ClaimParser(HTMLParser):
    def __init__(self, base_url: str):
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.marks = ClaimMarks([], [])

    def handle_starttag(self, tag, attrs):
        attributes = {name.lower(): (value or "") for name, value in attrs}
        if tag == "link" and "payment" in attributes.get("rel", "").lower().split():
            href = attributes.get("href", "").strip()
            if href:
                try:
                    self.marks.payment_links.append(urljoin(self.base_url, href))
                except ValueError:
                    pass
        elif tag == "meta" and attributes.get("name", "").strip().lower() == "flattr:owner":
            self.marks.owners.append(attributes.get("content", "").strip())

    handle_startendtag = handle_starttag


def find_marks(html: str, base_url: str) -> ClaimMarks:
    parser = _ClaimParser(base_url)
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient; whatever it found before a failure still counts
        pass
    return parser.marks


def names_user(href: str, username: str) -> bool:
    """Whether ``href`` is an auto-submit URL (path ending in /submit/auto) with ``user_id=username``."""
    try:
        parts = urlsplit(href)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.path.rstrip("/").endswith("/submit/auto"):
        return False
    return username in parse_qs(parts.query).get("user_id", [])


def page_claims(html: str, page_url: str, username: str) -> bool:
    """Whether the page names ``username`` as its owner: a payment link to an auto-submit URL with
    ``user_id=username``, or ``<meta name="flattr:owner" content="username">``. Usernames are
    stored lowercase, so the comparison is exact."""
    marks = find_marks(html, page_url)
    return username in marks.owners or any(names_user(href, username) for href in marks.payment_links)


def verify_claim(url: str, username: str, **fetch_options) -> str:
    """Fetch ``url`` (``fetch_options`` as ``fetch_page`` takes them) and check that it names
    ``username``; returns the address read, or raises ClaimRefused with the reason."""
    page = fetch_page(url, **fetch_options)
    if not page_claims(page.text, page.url, username):
        raise ClaimRefused(f"no payment link or flattr:owner meta naming you was found at {page.url}")
    return page.url
