import pytest

from services.common import settings
from services.gateway.rate_limits import parse_rate_limits


def test_environment_wins_over_defaults():
    assert settings.get("GATEWAY_PORT", {}) == "8000"
    assert settings.get("GATEWAY_PORT", {"GATEWAY_PORT": "9001"}) == "9001"


def test_child_environment_keeps_callers_values_and_fills_defaults():
    env = settings.defaults_for_child({"AMQP_URI": "amqp://elsewhere//"})
    assert env["AMQP_URI"] == "amqp://elsewhere//"
    assert env["GATEWAY_PORT"] == "8000"
    assert "FLATTR_ADMIN_TOKEN" not in env


def test_undeclared_settings_are_a_programming_error():
    with pytest.raises(KeyError):
        settings.get("NOT_A_SETTING")


def test_every_declared_setting_is_read_by_the_platform():
    """A setting in the README's table that no code reads would be a knob that does nothing."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    sources = [p for folder in ("services", "deploy") for p in (root / folder).rglob("*.py") if p.name != "settings.py"]
    text = "\n".join(p.read_text() for p in sources)
    unread = [s.name for s in settings.SETTINGS if f'"{s.name}"' not in text and f"'{s.name}'" not in text]
    assert unread == []


def test_rate_limit_setting():
    assert parse_rate_limits("off") is None
    defaults = parse_rate_limits("on")
    assert (defaults["token"], defaults["address"], defaults["signup"]) == ("5000/hour", "1000/hour", "100/hour")
    assert (defaults["login"], defaults["oauth"], defaults["admin"]) == ("10/minute", "30/minute", "10/minute")
    changed = parse_rate_limits("token=10/minute; signup=2/hour;admin=3/hour")
    assert (changed["token"], changed["signup"], changed["admin"], changed["login"]) == ("10/minute", "2/hour", "3/hour", "10/minute")
    with pytest.raises(ValueError):
        parse_rate_limits("bogus=1/hour")
    with pytest.raises(ValueError):
        parse_rate_limits("login=often")


def test_readme_settings_table_matches_the_code():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert settings.markdown_table() in readme
