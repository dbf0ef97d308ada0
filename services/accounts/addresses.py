"""Email addresses: confirming one by a mailed link (at sign-up and on a change), and one account
per confirmed address without telling a sign-up which addresses are registered.

Signing up with an address that another account has confirmed makes the account as usual (the
answer is the same as for a new address), but the address stays unconfirmed there for good: its
owner is told by mail instead of getting a confirmation link. An unconfirmed address may be
named by several accounts; the first to follow its link owns it.
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from services.accounts import mail, mail_texts, rules
from services.accounts.models import EmailLink, User
from services.common.errors import Conflict, InvalidParameters

CONFIRM_LIFETIME = timedelta(hours=48)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_link(session, user_id: int, purpose: str, email: str, lifetime: timedelta) -> tuple[str, int]:
    """A new one-time link's token (only its digest is stored) and the link's id."""
    token = secrets.token_urlsafe(32)
    link = EmailLink(token_hash=digest(token), user_id=user_id, purpose=purpose, email=email,
                     expires_at=datetime.now(timezone.utc) + lifetime)
    session.add(link)
    session.flush()
    return token, link.id


def find_link(session, token, purpose: str, lock: bool = False) -> EmailLink | None:
    if not isinstance(token, str) or not token or len(token) > 100 or not rules.is_storable(token):
        return None
    query = select(EmailLink).where(
        EmailLink.token_hash == digest(token), EmailLink.purpose == purpose, EmailLink.used_at.is_(None),
        EmailLink.expires_at > func.now(),
    )
    return session.scalar(query.with_for_update() if lock else query)


def take_link(session, token, purpose: str) -> EmailLink | None:
    """The link, marked used (under a row lock: two clicks on it use it once), or None."""
    link = find_link(session, token, purpose, lock=True)
    if link is not None:
        link.used_at = func.now()
    return link


def owner_of(session, email: str, other_than: int | None = None) -> User | None:
    """The account whose confirmed address ``email`` is, if any."""
    query = select(User).where(func.lower(User.email) == email.lower(), User.email_verified_at.is_not(None))
    if other_than is not None:
        query = query.where(User.id != other_than)
    return session.scalar(query)


def send_confirmation(session, mailer, user: User, email: str) -> None:
    token, link_id = issue_link(session, user.id, "confirm", email, CONFIRM_LIFETIME)
    subject, body = mail_texts.confirm_address(user.username, mail.link(f"/email/confirm/{token}"), int(CONFIRM_LIFETIME.total_seconds() // 3600))
    mailer.queue(session, f"confirm:{link_id}", email, subject, body, user.id)


def on_sign_up(session, mailer, user: User) -> None:
    """A confirmation link to the new account's address, or, when another account has confirmed
    that address, a word to its owner (who may have forgotten they have an account)."""
    owner = owner_of(session, user.email, other_than=user.id)
    if owner is None:
        send_confirmation(session, mailer, user, user.email)
        return
    token, link_id = issue_link(session, owner.id, "reset", owner.email, timedelta(minutes=60))
    subject, body = mail_texts.address_already_registered(user.username, owner.username, mail.link(f"/password/reset/{token}"))
    mailer.queue(session, f"signup-notice:{user.id}", owner.email, subject, body, owner.id)


def resend(session, mailer, user: User) -> bool:
    """A new confirmation link for the account's address, unless it is confirmed already or
    belongs to another account."""
    if user.email_verified_at is not None or owner_of(session, user.email, other_than=user.id) is not None:
        return False
    send_confirmation(session, mailer, user, user.email)
    return True


def request_change(session, mailer, user: User, new_email) -> str:
    """Mail a confirmation link to ``new_email``; the address changes when it is followed. The
    current address, if confirmed, is told. Answers the same whether or not the new address is
    someone else's (that shows when its link is followed, to whoever reads that mailbox)."""
    email = rules.validate_email(new_email)
    if email.lower() == user.email.lower() and user.email_verified_at is not None:
        raise InvalidParameters("this is your address already")
    send_confirmation(session, mailer, user, email)
    if user.email_verified_at is not None and email.lower() != user.email.lower():
        subject, body = mail_texts.address_changing(user.username, email)
        mailer.queue(session, f"address-changing:{user.id}:{email.lower()}:{int(datetime.now().timestamp())}", user.email, subject, body, user.id)
    return email


def confirm(session, token) -> User:
    """Follow a confirmation link: the link's address becomes the account's confirmed address."""
    link = take_link(session, token, "confirm")
    if link is None:
        raise InvalidParameters("this link is expired or was used already")
    user = session.get(User, link.user_id, with_for_update=True)
    if user is None or user.deleted_at is not None:
        raise InvalidParameters("this link is expired or was used already")
    if owner_of(session, link.email, other_than=user.id) is not None:
        raise Conflict("this address is confirmed by another account")
    user.email = link.email
    user.email_verified_at = func.now()
    # older links to other addresses of this account are void now
    session.execute(
        update(EmailLink).where(EmailLink.user_id == user.id, EmailLink.purpose == "confirm", EmailLink.used_at.is_(None)).values(used_at=func.now())
    )
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict("this address is confirmed by another account") from None
    return user
