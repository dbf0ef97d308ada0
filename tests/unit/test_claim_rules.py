"""Claim verification as plain functions: the page parser, the address rules and the safe fetch
(against a real HTTP server on 127.0.0.1; no broker, no database)."""
import time

import pytest

from services.accounts import claims
from services.common.errors import ClaimRefused, Forbidden
from tests.pages import PageServer, claim_page


@pytest.fixture
def pages():
    server = PageServer()
    yield server
    server.close()


# -- the page ---------------------------------------------------------------------------------

PAGE_URL = "https://blog.example/posts/1"


def test_payment_link_naming_the_user_claims():
    assert claims.page_claims(claim_page(payment_user="alice").decode(), PAGE_URL, "alice")
    assert not claims.page_claims(claim_page(payment_user="bob").decode(), PAGE_URL, "alice")


@pytest.mark.parametrize(
    "link",
    [
        '<link rel="payment" href="https://flattr.example/submit/auto?user_id=alice&url=x">',
        '<LINK REL="Payment" HREF="https://flattr.example/submit/auto?user_id=alice">',
        '<link rel="alternate  payment\tme" href="https://flattr.example/submit/auto/?url=x&amp;user_id=alice" />',
        # relative to the page: the platform serving the page
        '<link rel="payment" href="/submit/auto?user_id=alice">',
        '<link rel=payment href=https://flattr.example/x/submit/auto?user_id=alice>',
    ],
)
def test_payment_link_forms(link):
    assert claims.page_claims(f"<html><head>{link}</head></html>", PAGE_URL, "alice")


@pytest.mark.parametrize(
    "link",
    [
        '<link rel="paymentx" href="https://flattr.example/submit/auto?user_id=alice">',  # not the payment token
        '<link rel="payment" href="https://flattr.example/submit?user_id=alice">',  # not an auto-submit URL
        '<link rel="payment" href="https://flattr.example/submit/auto/more?user_id=alice">',
        '<link rel="payment" href="https://flattr.example/submit/auto?user_id=alice2">',
        '<link rel="payment" href="https://flattr.example/submit/auto?user_id=Alice">',  # usernames are lowercase
        '<link rel="payment" href="https://flattr.example/submit/auto?userid=alice">',
        '<link rel="payment" href="javascript:/submit/auto?user_id=alice">',
        '<a rel="payment" href="https://flattr.example/submit/auto?user_id=alice">',  # a link element only
        '<link rel="payment">',
        "<!-- <link rel=\"payment\" href=\"https://flattr.example/submit/auto?user_id=alice\"> -->",
    ],
)
def test_what_is_not_a_payment_link_for_alice(link):
    assert not claims.page_claims(f"<html><head>{link}</head></html>", PAGE_URL, "alice")


def test_owner_meta():
    assert claims.page_claims(claim_page(owner="alice").decode(), PAGE_URL, "alice")
    assert claims.page_claims('<meta NAME="Flattr:Owner" content=" alice ">', PAGE_URL, "alice")
    assert not claims.page_claims(claim_page(owner="bob").decode(), PAGE_URL, "alice")
    assert not claims.page_claims('<meta name="flattr:owner" content="ALICE">', PAGE_URL, "alice")
    assert not claims.page_claims('<meta property="flattr:owner" content="alice">', PAGE_URL, "alice")
    assert not claims.page_claims('<meta name="flattr:owner">', PAGE_URL, "alice")


def test_several_marks_and_broken_html():
    html = claim_page(payment_user="bob", owner="carol") + b'<meta name="flattr:owner" content="alice"><div <<< </p'
    assert claims.page_claims(html.decode(), PAGE_URL, "alice")
    assert claims.page_claims(html.decode(), PAGE_URL, "bob")
    assert not claims.page_claims("<html><head><title>nothing", PAGE_URL, "alice")
    assert not claims.page_claims("\x00\ufffd<<<>>>&#xdeadbeef;", PAGE_URL, "alice")


def test_more_tag_forms():
    href = "https://flattr.example/submit/auto?user_id=alice"
    claimed = [
        f"<link rel='payment' href='{href}'>",
        f'<link\nhref="{href}"\n rel="payment"/>',
        f'<link title="a > b" rel="payment" href="{href}">',  # a quoted ">" does not end the tag
        f'<link rel="payment"href="{href}">',
        '<meta content=alice name=flattr:owner />',
        '<meta name="flattr:owner" content="&#97;lice">',
        '<meta name="flattr:owner" name="other" content="alice">',  # the first of repeated names counts
        f'<!-- a comment --><link rel="payment" href="{href}">',
        '<!--><meta name="flattr:owner" content="alice">',  # "<!-->" is a whole (empty) comment
        '<script>if (a < b) {}</script><meta name="flattr:owner" content="alice">',
        '<style>p > a {}</STYLE ><meta name="flattr:owner" content="alice">',
    ]
    for html in claimed:
        assert claims.page_claims(f"<html><head>{html}</head></html>", PAGE_URL, "alice"), html
    not_claimed = [
        '<script>document.write(\'<meta name="flattr:owner" content="alice">\')</script>',
        '<script><meta name="flattr:owner" content="alice">',  # an unclosed script runs to the end
        '<!-- <meta name="flattr:owner" content="alice">',  # so does an unclosed comment
        '<!-- --!> --> <metax name="flattr:owner" content="alice">',
        '<meta name="flattr:owner" content="alice',  # never closed
        '<meta name="flattr:owner" content="alice>',  # an unterminated quote: the tag is dropped
        '<meta name="flattr:owner" content="' + "x" * claims.TAG_WINDOW + '"><p>alice</p>',
    ]
    for html in not_claimed:
        assert not claims.page_claims(f"<html><head>{html}</head></html>", PAGE_URL, "alice"), html


def test_only_the_first_tags_of_a_page_are_looked_at():
    decoys = '<meta name="description" content="x">' * (claims.MAX_TAGS - 1)
    owner = '<meta name="flattr:owner" content="alice">'
    assert claims.page_claims(decoys + owner, PAGE_URL, "alice")
    assert not claims.page_claims(decoys + "<link>" + owner, PAGE_URL, "alice")


MEGABYTE = 1 << 20


@pytest.mark.parametrize(
    "junk",
    [
        "<a " * (MEGABYTE // 3),
        "<link " * (MEGABYTE // 6),
        '<meta name="x" content="' * (MEGABYTE // 24),
        '<meta name="x" content="' + "x" * MEGABYTE,
        "<meta " + 'name="x" ' * (MEGABYTE // 9),
        ("<meta " + "a=b " * 1000 + ">") * (MEGABYTE // 4007),
        "<link rel='" * (MEGABYTE // 11),
        "<!--" * (MEGABYTE // 4),
        "<script>" * (MEGABYTE // 8),
        "<" * MEGABYTE,
    ],
    ids=[
        "a", "link", "meta-content", "meta-unterminated", "repeated-attributes", "long-tags", "quote", "comment", "script", "lt"
    ],
)
def test_pathological_pages_are_read_in_linear_time(junk):
    """A page of CLAIM_MAX_BYTES (1 MB) built to be slow to parse. html.parser (Python 3.11) is
    quadratic on such input: 100 KB of "<a " takes about 100 s and 1 MB hours, blocking the
    service. The scanner reads each in milliseconds; the 5 s bound is deliberately generous
    (no tight timing in unit tests): it only tells linear from quadratic."""
    owner = '<meta name="flattr:owner" content="alice">'
    started = time.monotonic()
    claims.find_marks(junk, PAGE_URL)
    claims.page_claims(owner + junk, PAGE_URL, "alice")
    found_after = claims.page_claims(junk + owner, PAGE_URL, "alice")
    assert time.monotonic() - started < 5
    assert claims.page_claims(owner + junk, PAGE_URL, "alice")
    if junk.startswith(("<a ", "<<")):
        assert found_after  # junk that is no <link>/<meta> does not hide a mark after it


# -- addresses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",  # cloud metadata
        "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "100.64.0.1", "192.0.2.1",
        "::1", "::", "fe80::1", "fe80::1%eth0", "fc00::1", "ff02::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::1",  # IPv4 inside IPv6 (mapped, 6to4)
        "2002:a00:1::1", "2002:c0a8:101::1", "2002:a9fe:a9fe::",  # 6to4 of 10.0.0.1, 192.168.1.1, 169.254.169.254
        "64:ff9b::7f00:1", "64:ff9b::127.0.0.1", "64:ff9b::a00:1", "64:ff9b::a9fe:a9fe",  # NAT64 (RFC 6052)
        "64:ff9b::", "64:ff9b::e000:1", "64:ff9b::6440:1",  # 0.0.0.0, multicast, shared
        "64:ff9b:1::7f00:1", "64:ff9b:1:7f00:1::", "64:ff9b:1::808:808",  # local-use NAT64 (RFC 8215): always
        "::7f00:1", "::10.0.0.1", "::808:808", "::ffff:0:7f00:1", "::ffff:0:808:808",  # IPv4-compatible, -translated
        "not an address",
    ],
)
def test_private_and_special_addresses_are_refused(address):
    assert claims.address_refused(address)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34", "1.1.1.1", "8.8.8.8", "2606:4700:4700::1111", "::ffff:93.184.216.34",
        "64:ff9b::808:808", "64:ff9b::93.184.216.34",  # NAT64 of a public address (a DNS64 network)
        "2002:808:808::1",  # 6to4 of a public address
    ],
)
def test_public_addresses_are_allowed(address):
    assert not claims.address_refused(address)


@pytest.mark.parametrize(
    "url, reason",
    [
        ("ftp://example.com/x", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http:///nohost", "names no host"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://[abc/", "not a valid URL"),
    ],
)
def test_only_http_urls_with_a_host(url, reason):
    with pytest.raises(ClaimRefused, match=reason):
        claims.parse_target(url)


def test_non_ascii_urls_are_encoded():
    target = claims.parse_target("https://bücher.example/ärger?q=ü")
    assert target.host == "xn--bcher-kva.example" and target.port == 443
    assert target.path == "/%C3%A4rger?q=%C3%BC"


def test_claim_refused_is_a_forbidden():
    assert issubclass(ClaimRefused, Forbidden)
    assert (ClaimRefused.code, ClaimRefused.status) == ("forbidden", 403)


# -- the fetch --------------------------------------------------------------------------------


def fetch(url, **options):
    options.setdefault("timeout", 2)
    options.setdefault("max_bytes", 10000)
    options.setdefault("allow_private", True)
    return claims.fetch_page(url, **options)


def test_private_address_is_refused_unless_allowed(pages):
    url = pages.serve("/p", claim_page(owner="alice"))
    with pytest.raises(ClaimRefused, match="refusing to fetch a private address"):
        fetch(url, allow_private=False)
    with pytest.raises(ClaimRefused, match="refusing to fetch a private address"):
        fetch(pages.url("/p", host="localhost"), allow_private=False)
    assert pages.requests == []  # refused before connecting
    assert "flattr:owner" in fetch(url).text


def test_a_name_resolving_to_private_and_public_addresses_is_fetched_from_a_public_one_only():
    asked = []

    def resolver(host, port):
        asked.append(host)
        return ["10.0.0.7", "127.0.0.1"]

    with pytest.raises(ClaimRefused, match="refusing to fetch a private address"):
        fetch("http://rebind.example/", allow_private=False, resolver=resolver)
    assert asked == ["rebind.example"]


def test_connects_to_the_checked_address_with_the_host_name(pages):
    """The name is resolved once, by the resolver that checked it; the request names the host."""
    pages.serve("/p", claim_page(owner="alice"))
    asked = []

    def resolver(host, port):
        asked.append((host, port))
        return ["127.0.0.1"]

    page = fetch(f"http://claims.invalid:{pages.port}/p", resolver=resolver)
    assert "flattr:owner" in page.text
    assert asked == [("claims.invalid", pages.port)]  # a name no real resolver knows
    assert pages.requests == [{"path": "/p", "host": f"claims.invalid:{pages.port}"}]


def test_unresolvable_host_and_refused_connection():
    with pytest.raises(ClaimRefused, match="does not resolve"):
        fetch("http://no-such-host.invalid/")
    with PageServerClosed() as port:
        with pytest.raises(ClaimRefused, match="could not fetch: connection refused"):
            fetch(f"http://127.0.0.1:{port}/")


class PageServerClosed:
    """A port nothing listens on."""

    def __enter__(self):
        server = PageServer()
        port = server.port
        server.close()
        return port

    def __exit__(self, *exc):
        return False


def test_redirects_are_followed_at_most_three_times_and_each_is_checked(pages):
    final = pages.serve("/final", claim_page(owner="alice"))
    pages.redirect("/r1", "/final")
    pages.redirect("/r2", pages.url("/r1"), status=301)
    pages.redirect("/r3", "/r2", status=307)
    pages.redirect("/r4", "/r3", status=308)
    page = fetch(pages.url("/r3"))
    assert page.url == final and "flattr:owner" in page.text
    with pytest.raises(ClaimRefused, match="more than 3 redirects"):
        fetch(pages.url("/r4"))

    pages.redirect("/to-ftp", "ftp://example.com/")
    with pytest.raises(ClaimRefused, match="only http and https"):
        fetch(pages.url("/to-ftp"))


def test_every_redirect_is_checked_again(pages, monkeypatch):
    """With private addresses off, a redirect to one is refused before connecting. (Here only
    10/8 counts as private, so the first hop can reach the test server on 127.0.0.1.)"""
    monkeypatch.setattr(claims, "address_refused", lambda address: address.startswith("10."))
    asked = []

    def resolver(host, port):
        asked.append(host)
        return claims.resolve(host, port)

    pages.redirect("/to-private", "http://10.1.2.3/admin")
    with pytest.raises(ClaimRefused, match="refusing to fetch a private address: 10.1.2.3"):
        fetch(pages.url("/to-private"), allow_private=False, resolver=resolver)
    assert asked == ["127.0.0.1", "10.1.2.3"]
    assert [r["path"] for r in pages.requests] == ["/to-private"]


def test_size_cap_with_and_without_content_length(pages):
    big = b"<html>" + b"x" * 20000 + b"</html>"
    with pytest.raises(ClaimRefused, match="page larger than 10000 bytes"):
        fetch(pages.serve("/big", big))
    with pytest.raises(ClaimRefused, match="page larger than 10000 bytes"):
        fetch(pages.serve("/big-unannounced", big, content_length=False))
    exact = b"<html>" + b"x" * (10000 - 13) + b"</html>"
    assert len(exact) == 10000
    assert fetch(pages.serve("/exact", exact, content_length=False)).text.endswith("</html>")


def test_only_html_is_read(pages):
    for content_type in ("application/json", "image/png", "text/plain"):
        url = pages.serve("/x", b"{}", headers={"Content-Type": content_type})
        with pytest.raises(ClaimRefused, match="not an HTML page"):
            fetch(url)
    with pytest.raises(ClaimRefused, match="not an HTML page"):
        fetch(pages.serve("/none", b"<html>", headers={}))
    url = pages.serve("/xhtml", claim_page(owner="alice"), headers={"Content-Type": "application/xhtml+xml"})
    assert "alice" in fetch(url).text
    latin = pages.serve("/latin", "<p>caf\u00e9</p>".encode("latin-1"), headers={"Content-Type": "text/html; charset=ISO-8859-1"})
    assert "caf\u00e9" in fetch(latin).text
    odd = pages.serve("/odd", b"<p>hi</p>", headers={"Content-Type": 'text/html; charset="no-such-charset"'})
    assert "hi" in fetch(odd).text


def test_error_statuses_are_refused(pages):
    with pytest.raises(ClaimRefused, match="answered HTTP 404"):
        fetch(pages.url("/missing"))
    with pytest.raises(ClaimRefused, match="answered HTTP 500"):
        fetch(pages.serve("/boom", b"<html>", status=500))
    with pytest.raises(ClaimRefused, match="redirect without a Location"):
        fetch(pages.serve("/nowhere", b"", status=302))


def test_timeout_covers_a_slow_answer(pages):
    url = pages.serve("/slow", claim_page(owner="alice"), delay=3)
    started = time.monotonic()
    with pytest.raises(ClaimRefused, match="could not fetch: timed out"):
        fetch(url, timeout=0.5)
    assert time.monotonic() - started < 1.5


def test_one_deadline_for_all_redirects(pages):
    pages.serve("/slow-final", claim_page(owner="alice"), delay=0.4)
    pages.redirect("/hop", "/slow-final")
    started = time.monotonic()
    with pytest.raises(ClaimRefused, match="timed out"):
        fetch(pages.url("/hop"), timeout=0.3)
    assert time.monotonic() - started < 1.0


def test_verify_claim(pages):
    url = pages.serve("/mine", claim_page(payment_user="alice"))
    assert claims.verify_claim(url, "alice", timeout=2, max_bytes=10000, allow_private=True) == url
    with pytest.raises(ClaimRefused) as refused:
        claims.verify_claim(url, "bob", timeout=2, max_bytes=10000, allow_private=True)
    assert refused.value.description == f"no payment link or flattr:owner meta naming you was found at {url}"


# -- https: the host name is what TLS checks, the checked address is what is connected to ---------


def _self_signed(tmp_path, name: str):
    """A certificate for ``name`` (its own CA) and its key, as files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return certfile, keyfile


def test_https_sends_the_host_name_and_checks_the_certificate_against_it(tmp_path):
    import ssl

    certfile, keyfile = _self_signed(tmp_path, "claims.test")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(certfile, keyfile)
    names = []
    server_tls.sni_callback = lambda sock, name, ctx: names.append(name)
    pages = PageServer(tls=server_tls)
    try:
        pages.serve("/p", claim_page(owner="alice"))
        trusting = ssl.create_default_context(cafile=str(certfile))
        to_local = lambda host, port: ["127.0.0.1"]  # noqa: E731

        page = fetch(f"https://claims.test:{pages.port}/p", resolver=to_local, tls=trusting)
        assert "flattr:owner" in page.text
        assert names == ["claims.test"]  # SNI names the host, not the address
        assert pages.requests[-1]["host"] == f"claims.test:{pages.port}"
        # the same server and certificate, reached under another name: refused
        with pytest.raises(ClaimRefused, match="TLS certificate of other.test is not valid"):
            fetch(f"https://other.test:{pages.port}/p", resolver=to_local, tls=trusting)
        # a certificate no trusted CA signed: refused
        with pytest.raises(ClaimRefused, match="TLS certificate of claims.test is not valid"):
            fetch(f"https://claims.test:{pages.port}/p", resolver=to_local)
    finally:
        pages.close()


def test_the_fetch_fits_in_the_gateways_rpc_timeout_by_default():
    from services.common import settings

    assert float(settings.get("CLAIM_FETCH_TIMEOUT", {})) + 1 < float(settings.get("RPC_TIMEOUT", {}))
