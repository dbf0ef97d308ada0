"""What a user changes about themself in /settings: profile fields and privacy choices."""
from __future__ import annotations

from services.accounts import rules
from services.accounts.models import User
from services.common.errors import InvalidParameters


def update(user: User, fields) -> None:
    if not isinstance(fields, dict):
        raise InvalidParameters("fields must be an object")
    for name, value in rules.validate_profile({k: v for k, v in fields.items() if k in rules.PROFILE_FIELDS}).items():
        setattr(user, name, value)


def set_privacy(user: User, hide_flattrs, hide_earnings) -> None:
    if not isinstance(hide_flattrs, bool) or not isinstance(hide_earnings, bool):
        raise InvalidParameters("hide_flattrs and hide_earnings are true or false")
    user.hide_flattrs = hide_flattrs
    user.hide_earnings = hide_earnings
