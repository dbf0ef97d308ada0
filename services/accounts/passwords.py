"""Passwords: changing one, and resetting a forgotten one by a link mailed to the
account's confirmed address."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from services.accounts import addresses, mail, mail_texts, rules
from services.accounts.credentials import hash_password, password_matches
from services.accounts.models import EmailLink, User
from services.common.errors import InvalidParameters, Unauthorized

RESET_LIFETIME = timedelta(minutes=60)


def check(user: User, password) -> None:
    if not rules.is_storable(password) or not password_matches(user.password_hash, password):
        raise Unauthorized("wrong password")


def change(session, mailer, user: User, current, new) -> None:
    check(user, current)
    user.password_hash = hash_password(rules.validate_password(new))
    _forget_reset_links(session, user.id)
    if user.email_verified_at is not None:
        subject, body = mail_texts.password_changed(user.username, mail.link("/password/reset"))
        mailer.queue(session, f"password-changed:{user.id}:{_stamp(session)}", user.email, subject, body, user.id)


def request_reset(session, mailer, who) -> None:
    """Mail a reset link to the confirmed address of the account named by ``who`` (a username or
    an address). Says nothing either way: the page answers the same for any ``who``."""
    if not rules.is_storable(who) or not isinstance(who, str) or not who.strip():
        return
    who = who.strip()
    confirmed = User.email_verified_at.is_not(None) & User.deleted_at.is_(None)
    if "@" in who:
        user = session.scalar(select(User).where(func.lower(User.email) == who.lower(), confirmed))
    else:
        user = session.scalar(select(User).where(User.username == who, confirmed))
    if user is None:
        return
    token, link_id = addresses.issue_link(session, user.id, "reset", user.email, RESET_LIFETIME)
    subject, body = mail_texts.password_reset(user.username, mail.link(f"/password/reset/{token}"), int(RESET_LIFETIME.total_seconds() // 60))
    mailer.queue(session, f"reset:{link_id}", user.email, subject, body, user.id)


def reset_link_user(session, token) -> User | None:
    link = addresses.find_link(session, token, "reset")
    if link is None:
        return None
    user = session.get(User, link.user_id)
    # a link mailed to an address the account no longer uses is void
    if user is None or user.deleted_at is not None or user.email.lower() != link.email.lower() or user.email_verified_at is None:
        return None
    return user


def reset(session, token, new_password) -> User:
    password = rules.validate_password(new_password)
    user = reset_link_user(session, token)
    if user is None or addresses.take_link(session, token, "reset") is None:
        raise InvalidParameters("this link is expired or was used already; ask for a new one")
    user.password_hash = hash_password(password)
    _forget_reset_links(session, user.id)
    return user


def _forget_reset_links(session, user_id: int) -> None:
    session.execute(
        update(EmailLink).where(EmailLink.user_id == user_id, EmailLink.purpose == "reset", EmailLink.used_at.is_(None)).values(used_at=func.now())
    )


def _stamp(session) -> str:
    return session.scalar(select(func.to_char(func.clock_timestamp(), "YYYYMMDDHH24MISSUS")))
