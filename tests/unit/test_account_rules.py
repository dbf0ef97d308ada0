import pytest

from services.accounts import rules
from services.common.errors import InvalidParameters
from services.common.things import title_from_url


@pytest.mark.parametrize("name", ["abc", "a_b-c", "x" * 32, "user123"])
def test_valid_usernames(name):
    assert rules.validate_username(name) == name


@pytest.mark.parametrize("name", ["ab", "x" * 33, "Alice", "a b", "ä-user", "", "a.b"])
def test_invalid_usernames_are_refused(name):
    with pytest.raises(InvalidParameters):
        rules.validate_username(name)


@pytest.mark.parametrize("email", ["a@example.com", "first.last+tag@sub.example.org"])
def test_valid_emails(email):
    assert rules.validate_email(email) == email


@pytest.mark.parametrize("email", ["no-at-sign", "a@b", "a@@example.com", "a b@example.com", "a@-bad.com"])
def test_invalid_emails_are_refused(email):
    with pytest.raises(InvalidParameters):
        rules.validate_email(email)


def test_password_needs_eight_characters_of_any_kind():
    assert rules.validate_password("        ") == "        "
    assert rules.validate_password("ünïcødé!")
    with pytest.raises(InvalidParameters):
        rules.validate_password("short")


def test_budget_minimum_and_maximum():
    assert rules.validate_budget(200, 100000) == 200
    for bad in (199, 0, -5, 100001, 2.5, "300", True):
        with pytest.raises(InvalidParameters):
            rules.validate_budget(bad, 100000)


def test_scopes_are_space_separated_and_known():
    assert rules.parse_scopes("thing flattr") == ["flattr", "thing"]
    assert rules.parse_scopes("thing,email") == ["email", "thing"]
    assert rules.parse_scopes("") == []
    with pytest.raises(InvalidParameters):
        rules.parse_scopes("thing admin")


def test_thing_rules_title_category_language_tags():
    fields = rules.validate_thing_fields(
        {"title": "  Hello world ", "category": "software", "language": "de_DE", "tags": "a, b,,a", "hidden": True},
        creating=True,
    )
    assert fields == {"title": "Hello world", "category": "software", "language": "de_DE", "tags": ["a", "b"], "hidden": True}
    for bad in ({"title": "abcd"}, {"title": "x" * 101}, {"title": "Hello", "category": "cats"}, {"title": "Hello", "language": "xx"}):
        with pytest.raises(InvalidParameters):
            rules.validate_thing_fields(bad, creating=True)
    with pytest.raises(InvalidParameters):
        rules.validate_thing_fields({"description": "d" * 1001}, creating=False)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com", "http://", "javascript:alert(1)", " "])
def test_thing_urls_must_be_http(url):
    with pytest.raises(InvalidParameters):
        rules.validate_url(url)


def test_auto_submit_urls_are_recognised_with_their_fields():
    auto = rules.auto_submit(
        "https://flattr.example/submit/auto?user_id=alice&url=https%3A%2F%2Fblog.example%2Fp%3Fa%3D1&title=My+post&tags=a,b&hidden=1"
    )
    assert auto.username == "alice"
    assert auto.url == "https://blog.example/p?a=1"
    assert auto.fields == {"title": "My post", "tags": "a,b", "hidden": True}
    assert rules.auto_submit("https://blog.example/submit/other?user_id=a&url=b") is None
    assert rules.auto_submit("https://flattr.example/submit/auto?user_id=alice") is None
    with pytest.raises(InvalidParameters):
        rules.auto_submit("https://flattr.example/submit/auto?user_id=Not+A+User&url=https%3A%2F%2Fblog.example%2F")


def test_tag_query_and_binds_tighter_than_or():
    query = rules.parse_tag_query("python&money|!java")
    assert query.groups == ((("python", "money"), ()), ((), ("java",)))
    with pytest.raises(InvalidParameters):
        rules.parse_tag_query("|&")


def test_title_from_url_uses_host_and_path():
    assert title_from_url("https://blog.example.com/posts/1?x=y") == "blog.example.com/posts/1"
    assert len(title_from_url("http://a.b")) >= 5
