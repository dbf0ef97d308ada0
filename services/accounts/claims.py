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
import re
import socket
import ssl
import time
from dataclasses import dataclass
from html import unescape
from urllib.parse import parse_qs, quote, urljoin, urlsplit

from services.common.errors import ClaimRefused

MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
USER_AGENT = "flattr-claim-check/1 (+ownership verification)"
_CHUNK = 16 * 1024


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
    """Whether a resolved address is one a claim fetch must not reach (without ``allow_private``).

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


# The page is read with a small bounded scanner rather than html.parser: on Python 3.11
# html.parser is quadratic on unclosed tags (a 1 MB page of "<a " takes hours, and never yields
# to eventlet), and the page is whatever the claimant chooses to serve. The scanner does linear
# work in the page size: one regex pass finds the tag starts that matter, and each <link>/<meta>
# is read within TAG_WINDOW characters and only the first MAX_TAGS of them are looked at.
# Comments and the raw text of <script>/<style> are skipped, as html.parser did.
TAG_WINDOW = 4096  # a <link>/<meta> tag not closed within this many characters is skipped
MAX_TAGS = 500  # <link>/<meta> tags looked at per page

_TAG_START = re.compile(
    r"<(?:(?P<comment>!--)|(?P<tag>link|meta)(?=[\s/>])|(?P<raw>script|style)(?=[\s/>]))",
    re.IGNORECASE | re.ASCII,
)
_COMMENT_END = re.compile(r"--!?>")
_RAW_END = {
    "script": re.compile(r"</script(?=[\s/>])", re.IGNORECASE | re.ASCII),
    "style": re.compile(r"</style(?=[\s/>])", re.IGNORECASE | re.ASCII),
}
# The rest of a tag up to its ">", quoted values and all (a quote left open within the window:
# no match). Possessive, so a failed match never backtracks.
_TAG_END = re.compile(r"""(?:[^>"']++|"[^"]*+"|'[^']*+')*+>""")
# The attributes in a tag's text: name, then a double-quoted, single-quoted or bare value
_ATTRIBUTE = re.compile(r"""([^\s/>=][^\s/>=]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|(?!["'])([^\s>]*)))?""", re.ASCII)


def _tag_attributes(html: str, pos: int) -> tuple[dict[str, str], int] | None:
    """The attributes of the tag whose name ends at ``pos`` (names lowercased, entities decoded,
    the first of repeated names kept, as browsers do) and the position after its ``>``; None if
    the tag does not end within TAG_WINDOW characters."""
    limit = min(len(html), pos + TAG_WINDOW)
    if html.find(">", pos, limit) == -1:  # the quick answer for most broken tags
        return None
    end = _TAG_END.match(html, pos, limit)
    if end is None:
        return None
    attributes: dict[str, str] = {}
    for name, double_quoted, single_quoted, bare in _ATTRIBUTE.findall(html, pos, end.end() - 1):
        name = name.lower()
        if name not in attributes:
            attributes[name] = unescape(double_quoted or single_quoted or bare)
    return attributes, end.end()


def _claim_tags(html: str):
    """``(tag name, attributes)`` of the <link> and <meta> tags of the page, in order."""
    pos, seen = 0, 0
    while seen < MAX_TAGS:
        match = _TAG_START.search(html, pos)
        if match is None:
            return
        if match.group("comment"):
            if html.startswith(">", match.end()) or html.startswith("->", match.end()):  # <!--> <!--->
                pos = html.index(">", match.end()) + 1
                continue
            end = _COMMENT_END.search(html, match.end())
            if end is None:
                return  # an unclosed comment runs to the end of the page
            pos = end.end()
        elif match.group("raw"):
            end = _RAW_END[match.group("raw").lower()].search(html, match.end())
            if end is None:
                return
            pos = end.end()
        else:
            seen += 1
            found = _tag_attributes(html, match.end())
            if found is None:
                pos = match.end()
                continue
            attributes, pos = found
            yield match.group("tag").lower(), attributes


def find_marks(html: str, base_url: str) -> ClaimMarks:
    marks = ClaimMarks([], [])
    for tag, attributes in _claim_tags(html):
        if tag == "link" and "payment" in attributes.get("rel", "").lower().split():
            href = attributes.get("href", "").strip()
            if href:
                try:
                    marks.payment_links.append(urljoin(base_url, href))
                except ValueError:
                    pass
        elif tag == "meta" and attributes.get("name", "").strip().lower() == "flattr:owner":
            marks.owners.append(attributes.get("content", "").strip())
    return marks


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
