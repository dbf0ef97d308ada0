import pytest
from flask import Flask

from services.gateway.views.web import safe_next


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/oauth/authorize?client_id=x", "/oauth/authorize?client_id=x"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_sign_in_redirects_only_to_local_paths(target, expected):
    app = Flask(__name__)
    app.add_url_rule("/", "web.home", lambda: "")
    with app.test_request_context():
        assert safe_next(target) == expected
