"""Which scopes a token may have: money scopes for personal tokens only, never a token with none."""
import pytest

from services.accounts import rules
from services.common.errors import InvalidParameters


def test_personal_tokens_may_have_the_money_scopes_and_must_have_one_scope():
    assert rules.parse_personal_scopes("payout, wallet flattr") == ["flattr", "payout", "wallet"]
    for nothing in ("", "  ", " , ", None):
        with pytest.raises(InvalidParameters, match="scope is required"):
            rules.parse_personal_scopes(nothing)
    with pytest.raises(InvalidParameters, match="unknown scope: admin"):
        rules.parse_personal_scopes("wallet admin")


def test_client_applications_never_get_the_money_scopes():
    assert rules.parse_scopes("flattr extendedread") == ["extendedread", "flattr"]
    for money in ("wallet", "payout", "thing payout"):
        with pytest.raises(InvalidParameters, match="unknown scope"):
            rules.parse_scopes(money)
