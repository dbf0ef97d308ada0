"""The fetch of an ownership check against real servers on 127.0.0.1 (http and https), and the
page parse in its child process. No broker or database."""
import time

import pytest

from services.accounts import page_checks, page_fetch, page_marks
from services.common.errors import ClaimRefused
from tests.pages import PageServer, claim_page


# -- the fetch --------------------------------------------------------------------------------


def fetch(url, *, timeout=2, max_bytes=10000, allow_private=True, **options):
    return page_fetch.fetch(url, page_fetch.Rules(timeout, max_bytes, allow_private), **options)


def test_private_address_is_refused_unless_allowed(pages, monkeypatch):
    url = pages.serve("/p", claim_page(owner="alice"))
    # without the test setting only https on 80 and 443 is read: let the page server's port count
    monkeypatch.setattr(page_fetch, "ALLOWED_PORTS", frozenset({80, 443, pages.port}))
    for host in ("127.0.0.1", "localhost"):
        with pytest.raises(ClaimRefused, match=f"refusing to fetch a private address: {host} resolves to one"):
            fetch(pages.url("/p", host=host), allow_private=False)
    assert pages.requests == []  # refused before connecting
    assert "flattr:owner" in fetch(url).text


def test_without_the_test_setting_a_local_server_is_not_even_tried(pages):
    with pytest.raises(ClaimRefused, match="only ports 80 and 443 are read"):
        fetch(pages.serve("/p", claim_page(owner="alice")), allow_private=False)
    assert pages.requests == []


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


def test_redirects_stay_on_the_site(pages):
    """A page cannot hand its check to a page of another site, which might name the claimer."""
    elsewhere = PageServer()
    try:
        elsewhere.serve("/mine", claim_page(owner="mallory"))
        pages.redirect("/to-localhost", elsewhere.url("/mine", host="localhost"))
        pages.redirect("/to-other", "http://other.test/mine")
        for path in ("/to-localhost", "/to-other"):
            with pytest.raises(ClaimRefused, match=f"could not fetch: {pages.url(path)} redirects to another site"):
                fetch(pages.url(path))
        assert elsewhere.requests == []
    finally:
        elsewhere.close()


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


def test_check_page(pages):
    url = pages.serve("/mine", claim_page(payment_user="alice"))
    rules = page_fetch.Rules(2, 10000, True)
    page_checks.check_page(url, "alice", rules)
    with pytest.raises(ClaimRefused) as refused:
        page_checks.check_page(url, "bob", rules)
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


def test_every_redirect_within_the_site_is_checked_again(tmp_path, monkeypatch):
    """Without the test setting, a redirect to another host of the site that resolves to a private
    address is refused before connecting. (Here the page server's port counts as a web port and
    only 10/8 as private, so the first hop can reach the test server on 127.0.0.1 over https.)"""
    import ssl

    certfile, keyfile = _self_signed(tmp_path, "www.claims.test")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(certfile, keyfile)
    pages = PageServer(tls=server_tls)
    try:
        monkeypatch.setattr(page_fetch, "ALLOWED_PORTS", frozenset({80, 443, pages.port}))
        monkeypatch.setattr(page_fetch, "address_refused", lambda address: address.startswith("10."))
        addresses = {"www.claims.test": ["127.0.0.1"], "internal.claims.test": ["10.1.2.3"]}
        asked = []

        def resolver(host, port):
            asked.append(host)
            return addresses[host]

        pages.redirect("/to-private", f"https://internal.claims.test:{pages.port}/admin")
        trusting = ssl.create_default_context(cafile=str(certfile))
        url = f"https://www.claims.test:{pages.port}/to-private"
        with pytest.raises(ClaimRefused) as refused:
            fetch(url, allow_private=False, resolver=resolver, tls=trusting)
        assert refused.value.description == "refusing to fetch a private address: internal.claims.test resolves to one"
        assert "10.1.2.3" not in refused.value.description  # nothing the resolver said is echoed
        assert asked == ["www.claims.test", "internal.claims.test"]
        assert [r["path"] for r in pages.requests] == ["/to-private"]
    finally:
        pages.close()


# -- the parse, in a child process ----------------------------------------------------------------

MEGABYTE = 1 << 20
OWNER = '<meta name="flattr:owner" content="alice">'


def test_marks_are_read_in_a_child_process_kept_for_the_next_page():
    import os

    marks = page_marks.read_marks(claim_page(owner="alice", payment_user="bob").decode(), "https://blog.example/", 2)
    assert marks.names("alice") and marks.names("bob") and not marks.names("carol")
    child = page_marks._idle[-1].process
    assert child.pid != os.getpid() and child.poll() is None
    assert page_marks.read_marks(claim_page(owner="carol").decode(), "https://blog.example/", 2).names("carol")
    assert page_marks._idle[-1].process is child  # the same child read the next page


def test_a_child_that_misses_its_deadline_is_killed():
    hostile = "<head><meta " + "".join(f'a{i}="x" ' for i in range(MEGABYTE // 12))
    page_marks.read_marks("<p>warm</p>", "https://blog.example/", 2)
    child = page_marks._idle[-1].process
    with pytest.raises(page_marks.Unreadable):
        page_marks.read_marks(hostile, "https://blog.example/", 0.005)  # a deadline no machine meets for this page
    assert child.poll() is not None  # killed, not left parsing
    assert page_marks.read_marks(OWNER, "https://blog.example/", 2).names("alice")


@pytest.mark.parametrize(
    "junk",
    [
        "<div>" * (MEGABYTE // 5),  # nesting: quadratic in any HTML5 tree builder
        "<ul><li>" * (MEGABYTE // 8),
        "<meta " + "".join(f'a{i}="x" ' for i in range(MEGABYTE // 12)),  # distinct attributes: quadratic too
    ],
    ids=["div-nesting", "list-nesting", "distinct-attributes"],
)
def test_a_page_no_parser_reads_in_linear_time_is_bounded(junk):
    """After the head, it costs only the head's prefix; inside the head, the child process is
    killed at the deadline and the page refused. Either way within a few seconds, never the
    minutes an unbounded parse takes. The bounds are generous: they tell bounded from unbounded."""
    started = time.monotonic()
    try:
        found = page_marks.read_marks(OWNER + junk, "https://blog.example/", 2).names("alice")
    except page_marks.Unreadable:
        found = None
    assert time.monotonic() - started < 10
    if not junk.startswith("<meta "):
        assert found  # the mark came before the junk, in the head
    started = time.monotonic()
    try:
        page_marks.read_marks(junk + OWNER, "https://blog.example/", 2)
    except page_marks.Unreadable:
        pass
    assert time.monotonic() - started < 10


def test_a_page_that_does_not_parse_in_time_is_refused_with_a_reason(pages, monkeypatch):
    # a deadline no machine parses this page within: the refusal, not the machine's speed, is tested
    monkeypatch.setattr(page_checks, "PARSE_SECONDS", 0.05)
    url = pages.serve("/hostile", ("<head><meta " + "".join(f'a{i}="x" ' for i in range(MEGABYTE // 12))).encode())
    with pytest.raises(ClaimRefused, match=f"could not read {url}: the page could not be parsed in time"):
        page_checks.check_page(url, "alice", page_fetch.Rules(5, 2 * MEGABYTE, True))

