"""Ownership checks' rules as plain functions: the owner marks of a page (parsed in this
process), the address, URL and site rules of the fetch, host names and the well-known file.
No network, broker or database; the fetch itself is tested in tests/services/test_page_fetch.py."""
import time

import pytest

from services.accounts import page_checks, page_fetch, page_marks, sites
from services.common.errors import ClaimRefused, Forbidden, InvalidParameters
from tests.pages import claim_page


def page_claims(html: str, page_url: str, username: str) -> bool:
    return page_marks.find_marks(html, page_url).names(username)


# -- the page ---------------------------------------------------------------------------------

PAGE_URL = "https://blog.example/posts/1"


def test_payment_link_naming_the_user_claims():
    assert page_claims(claim_page(payment_user="alice").decode(), PAGE_URL, "alice")
    assert not page_claims(claim_page(payment_user="bob").decode(), PAGE_URL, "alice")


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
    assert page_claims(f"<html><head>{link}</head></html>", PAGE_URL, "alice")


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
    assert not page_claims(f"<html><head>{link}</head></html>", PAGE_URL, "alice")


def test_owner_meta():
    assert page_claims(claim_page(owner="alice").decode(), PAGE_URL, "alice")
    assert page_claims('<meta NAME="Flattr:Owner" content=" alice ">', PAGE_URL, "alice")
    assert not page_claims(claim_page(owner="bob").decode(), PAGE_URL, "alice")
    assert not page_claims('<meta name="flattr:owner" content="ALICE">', PAGE_URL, "alice")
    assert not page_claims('<meta property="flattr:owner" content="alice">', PAGE_URL, "alice")
    assert not page_claims('<meta name="flattr:owner">', PAGE_URL, "alice")


def test_several_marks_and_broken_html():
    html = claim_page(payment_user="bob", owner="carol") + b'<meta name="flattr:owner" content="alice"><div <<< </p'
    assert page_claims(html.decode(), PAGE_URL, "bob")
    assert page_claims(html.decode(), PAGE_URL, "carol")
    assert not page_claims(html.decode(), PAGE_URL, "alice")  # after the document: in its body
    assert not page_claims("<html><head><title>nothing", PAGE_URL, "alice")
    assert not page_claims("\x00\ufffd<<<>>>&#xdeadbeef;", PAGE_URL, "alice")


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
        assert page_claims(f"<html><head>{html}</head></html>", PAGE_URL, "alice"), html
    not_claimed = [
        '<script>document.write(\'<meta name="flattr:owner" content="alice">\')</script>',
        '<script><meta name="flattr:owner" content="alice">',  # an unclosed script runs to the end
        '<!-- <meta name="flattr:owner" content="alice">',  # so does an unclosed comment
        '<!-- --!> --> <metax name="flattr:owner" content="alice">',
        '<meta name="flattr:owner" content="alice',  # never closed
        '<meta name="flattr:owner" content="alice>',  # an unterminated quote: the tag is dropped
        '<meta name="flattr:owner" content="' + "x" * 4096 + '"><p>alice</p>',
        # a template's content is not the head's
        '<template><meta name="flattr:owner" content="alice"></template>',
    ]
    for html in not_claimed:
        assert not page_claims(f"<html><head>{html}</head></html>", PAGE_URL, "alice"), html


@pytest.mark.parametrize(
    "html",
    [
        # markup left inside an attribute value (a comment sanitizer that escaped nothing)
        "<html><head><title>t</title></head><body><div title='<meta name=\"flattr:owner\" content=\"alice\">'>hi</div></body></html>",
        "<html><head><meta name=\"description\" content='<link rel=\"payment\" href=\"/submit/auto?user_id=alice\">'></head></html>",
        # in the body, where a visitor's comment goes
        '<html><head><title>t</title></head><body><p>hi</p><meta name="flattr:owner" content="alice"></body></html>',
        '<html><head></head><body><link rel="payment" href="/submit/auto?user_id=alice"></body></html>',
        # text before the mark starts the body, as in a browser
        'Hello <meta name="flattr:owner" content="alice">',
    ],
    ids=["attribute", "attribute-link", "body-meta", "body-link", "after-text"],
)
def test_marks_outside_the_head_do_not_count(html):
    assert not page_claims(html, PAGE_URL, "alice")


def test_a_mark_between_head_and_body_is_in_the_head_as_browsers_put_it():
    assert page_claims('<head></head> <meta name="flattr:owner" content="alice"><body>', PAGE_URL, "alice")


def test_a_long_head_is_read_past_the_prefix():
    script = "<script>" + "x" * (2 * page_marks.HEAD_PREFIX) + "</script>"
    assert page_claims(f'<html><head>{script}<meta name="flattr:owner" content="alice"></head><body>hi', PAGE_URL, "alice")
    # a head that ended within the prefix is the whole head: a later mark is in the body
    late = "<p>" + "x" * (2 * page_marks.HEAD_PREFIX) + '<meta name="flattr:owner" content="alice">'
    assert not page_claims(f"<html><head></head><body>{late}", PAGE_URL, "alice")


def test_only_the_first_marks_of_a_page_are_kept():
    decoys = "".join(f'<meta name="flattr:owner" content="u{i}">' for i in range(page_marks.MAX_MARKS - 1))
    owner = '<meta name="flattr:owner" content="alice">'
    assert page_claims(decoys + owner, PAGE_URL, "alice")
    assert not page_claims(decoys + '<meta name="flattr:owner" content="x">' + owner, PAGE_URL, "alice")


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
    quadratic on such input: 100 KB of "<a " takes about 100 s and 1 MB hours. The HTML5 parser
    reads each in well under a second; the 5 s bound is deliberately generous (no tight timing in
    unit tests): it only tells linear from quadratic. (What no parser reads linearly, the service
    bounds by parsing in a child process: tests/services/test_page_fetch.py.)"""
    owner = '<meta name="flattr:owner" content="alice">'
    started = time.monotonic()
    page_marks.find_marks(junk, PAGE_URL)
    claimed = page_claims(owner + junk, PAGE_URL, "alice")
    page_claims(junk + owner, PAGE_URL, "alice")
    assert time.monotonic() - started < 5
    assert claimed


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
    assert page_fetch.address_refused(address)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34", "1.1.1.1", "8.8.8.8", "2606:4700:4700::1111", "::ffff:93.184.216.34",
        "64:ff9b::808:808", "64:ff9b::93.184.216.34",  # NAT64 of a public address (a DNS64 network)
        "2002:808:808::1",  # 6to4 of a public address
    ],
)
def test_public_addresses_are_allowed(address):
    assert not page_fetch.address_refused(address)


@pytest.mark.parametrize(
    "url, reason",
    [
        ("ftp://example.com/x", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http:///nohost", "names no host"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://[abc/", "not a valid URL"),
        ("https://example.com:8443/", "only ports 80 and 443"),
        ("http://example.com:8080/", "only ports 80 and 443"),
    ],
)
def test_only_http_urls_with_a_host_on_the_web_ports(url, reason):
    with pytest.raises(ClaimRefused, match=reason):
        page_fetch.parse_target(url)


def test_http_is_read_at_its_https_twin():
    for url in ("http://blog.example/a?b=c", "http://blog.example:80/a?b=c", "https://blog.example:443/a?b=c"):
        target = page_fetch.parse_target(url)
        assert (target.scheme, target.host, target.port, target.path) == ("https", "blog.example", 443, "/a?b=c"), url


def test_the_test_setting_lifts_the_https_and_port_rules():
    target = page_fetch.parse_target("http://127.0.0.1:8123/p", allow_private=True)
    assert (target.scheme, target.host, target.port) == ("http", "127.0.0.1", 8123)


def test_non_ascii_urls_are_encoded():
    target = page_fetch.parse_target("https://bücher.example/ärger?q=ü")
    assert target.host == "xn--bcher-kva.example" and target.port == 443
    assert target.path == "/%C3%A4rger?q=%C3%BC"


# -- sites and hosts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first, other, same",
    [
        ("example.com", "example.com", True),
        ("example.com", "www.example.com", True),
        ("blog.example.co.uk", "example.co.uk", True),
        ("example.com", "example.org", False),
        ("example.co.uk", "other.co.uk", False),  # co.uk is a public suffix
        ("alice.github.io", "mallory.github.io", False),  # so is github.io (the list's private part)
        ("127.0.0.1", "localhost", False),
        ("127.0.0.1", "127.0.0.2", False),
    ],
)
def test_redirects_stay_within_a_site(first, other, same):
    assert sites.same_site(first, other) is same


def test_host_keys():
    assert sites.host_of_url("https://Bücher.Example./x") == "xn--bcher-kva.example"
    assert sites.host_of_url("https://blog.example:443/x") == sites.host_of_url("http://blog.example/y") == "blog.example"
    assert sites.host_of_url("http://127.0.0.1:8123/x") == "127.0.0.1:8123"
    assert sites.parse_host(" Blog.Example ", allow_private=False) == "blog.example"
    assert sites.parse_host("blog.example:443", allow_private=False) == "blog.example"
    assert sites.parse_host("127.0.0.1:8123", allow_private=True) == "127.0.0.1:8123"


@pytest.mark.parametrize(
    "value", ["", "https://blog.example", "blog.example/a", "blog.example:8443", "localhost", "alice@blog.example", "a b", None, 7]
)
def test_what_is_not_a_host(value):
    with pytest.raises(InvalidParameters):
        sites.parse_host(value, allow_private=False)


def test_well_known_file():
    text = "# the people who write here\n\n  alice  \nbob\r\n#carol\n"
    assert page_checks.well_known_names(text) == {"alice", "bob"}
    assert page_checks.well_known_names("alicex\n") == {"alicex"}


def test_claim_refused_is_a_forbidden():
    assert issubclass(ClaimRefused, Forbidden)
    assert (ClaimRefused.code, ClaimRefused.status) == ("forbidden", 403)


