"""What the gateway will not start without, and what make dev makes for it."""
import pytest

from deploy.dev import fill_gateway_settings
from services.gateway import config

STRONG = "k3V9-xQ2mZr7Lw0pTb5YcN8dHs1fGj4a"  # 32 characters, random-looking
URL = "https://flattr.example.org"


def load(**environ):
    return config.load(environ=environ)


def test_a_strong_secret_and_a_public_url_are_enough():
    loaded = load(FLATTR_SECRET_KEY=STRONG, FLATTR_PUBLIC_URL=URL + "/")
    assert (loaded.secret_key, loaded.admin_token, loaded.public_url) == (STRONG, None, URL)
    assert loaded.secure_cookies and not loaded.development
    assert not load(FLATTR_SECRET_KEY=STRONG, FLATTR_PUBLIC_URL="http://localhost:8000").secure_cookies


@pytest.mark.parametrize(
    "environ, problem",
    [
        ({"FLATTR_PUBLIC_URL": URL}, "FLATTR_SECRET_KEY is not set"),
        ({"FLATTR_SECRET_KEY": "short", "FLATTR_PUBLIC_URL": URL}, "FLATTR_SECRET_KEY is shorter than 32"),
        ({"FLATTR_SECRET_KEY": "changeme-dev-only-changeme-dev-only", "FLATTR_PUBLIC_URL": URL}, "FLATTR_SECRET_KEY is a placeholder"),
        ({"FLATTR_SECRET_KEY": "a" * 40, "FLATTR_PUBLIC_URL": URL}, "FLATTR_SECRET_KEY is too repetitive"),
        ({"FLATTR_SECRET_KEY": "REPLACE_ME_SECRET_KEY_0123456789abcdef", "FLATTR_PUBLIC_URL": URL}, "FLATTR_SECRET_KEY is a placeholder"),
        ({"FLATTR_SECRET_KEY": STRONG, "FLATTR_PUBLIC_URL": URL, "FLATTR_ADMIN_TOKEN": "admin"}, "FLATTR_ADMIN_TOKEN is shorter"),
        ({"FLATTR_SECRET_KEY": STRONG, "FLATTR_PUBLIC_URL": URL, "FLATTR_ADMIN_TOKEN": "changeme" * 5}, "FLATTR_ADMIN_TOKEN is a placeholder"),
        ({"FLATTR_SECRET_KEY": STRONG}, "FLATTR_PUBLIC_URL is not set"),
        ({"FLATTR_SECRET_KEY": STRONG, "FLATTR_PUBLIC_URL": "flattr.example.org"}, "FLATTR_PUBLIC_URL must be"),
        ({"FLATTR_SECRET_KEY": STRONG, "FLATTR_PUBLIC_URL": "https://x.example/?a=1"}, "FLATTR_PUBLIC_URL must be"),
    ],
)
def test_weak_or_missing_settings_refuse_to_start(environ, problem):
    with pytest.raises(config.UnsafeSettings) as refused:
        load(**environ)
    assert any(p.startswith(problem) for p in refused.value.problems), refused.value.problems
    assert "FLATTR_DEVELOPMENT=on" in str(refused.value)


def test_the_development_flag_lets_weak_settings_through():
    loaded = load(FLATTR_DEVELOPMENT="on", FLATTR_ADMIN_TOKEN="admin", GATEWAY_PORT="8123")
    assert loaded.development and loaded.admin_token == "admin"
    assert len(loaded.secret_key) >= 32  # a random one, for this process
    assert loaded.public_url == "http://127.0.0.1:8123"


def test_make_dev_makes_strong_secrets_and_its_address_and_refuses_weak_ones():
    env = {"GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": "8000"}
    assert fill_gateway_settings(env) is True
    assert config.weakness(env["FLATTR_SECRET_KEY"]) is None and config.weakness(env["FLATTR_ADMIN_TOKEN"]) is None
    assert env["FLATTR_PUBLIC_URL"] == "http://127.0.0.1:8000"
    mine = {"GATEWAY_HOST": "0.0.0.0", "GATEWAY_PORT": "8000", "FLATTR_ADMIN_TOKEN": STRONG}
    assert fill_gateway_settings(mine) is False and mine["FLATTR_ADMIN_TOKEN"] == STRONG
    assert mine["FLATTR_PUBLIC_URL"] == "http://127.0.0.1:8000"
    with pytest.raises(config.UnsafeSettings):
        fill_gateway_settings({"GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": "8000", "FLATTR_ADMIN_TOKEN": "admin"})
    fill_gateway_settings({"GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": "8000", "FLATTR_ADMIN_TOKEN": "admin", "FLATTR_DEVELOPMENT": "on"})
