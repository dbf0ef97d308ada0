"""Users and their passwords: sign-up, sign-in and the user records other services read.

Passwords are hashed with Argon2id (argon2-cffi), in a real thread (``tpool``): hashing takes
tens of milliseconds of CPU that would otherwise stall every green thread of the process."""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from eventlet import tpool
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.accounts import addresses, rules
from services.accounts.models import User
from services.common.errors import Conflict, InvalidParameters, Unauthorized, UserNotFound
from services.common.times import unix

_hasher = PasswordHasher()
# Verifying against this keeps the time of a log-in with an unknown username like a known one.
_DUMMY_HASH = _hasher.hash("not a real password")


def hash_password(password: str) -> str:
    return tpool.execute(_hasher.hash, password)


def password_matches(stored: str | None, password: str) -> bool:
    """Whether ``password`` is the one ``stored`` was hashed from; with no ``stored`` (an unknown
    user) a dummy hash is checked, so the answer takes as long either way."""
    try:
        tpool.execute(_hasher.verify, stored or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return stored is not None


def user_dict(user: User) -> dict:
    return {
        "id": user.id,
        "username": user.username,
        "firstname": user.firstname,
        "lastname": user.lastname,
        "avatar": user.avatar,
        "about": user.about,
        "city": user.city,
        "country": user.country,
        "email": user.email,
        "registered_at": unix(user.registered_at),
        "email_confirmed": user.email_verified_at is not None,
        "hide_flattrs": user.hide_flattrs,
        "hide_earnings": user.hide_earnings,
    }


def register_user(db, events, mailer, username, email, password, profile=None) -> dict:
    username = rules.validate_username(username)
    email = rules.validate_email(email)
    password = rules.validate_password(password)
    profile = rules.validate_profile(profile or {})
    if db.scalar(select(User.id).where(User.username == username)):
        raise Conflict("username is taken")
    # an address registered already is no reason to refuse: that would tell who is registered
    # (addresses.on_sign_up tells the address's owner instead)
    user = User(username=username, email=email, password_hash=hash_password(password), **profile)
    db.add(user)
    try:
        db.flush()
    except IntegrityError:
        raise Conflict("username is taken") from None
    addresses.on_sign_up(db, mailer, user)
    events.record(db, "user.registered", {"user_id": user.id, "username": user.username})
    db.commit()
    return user_dict(user)


def check_password(db, username, password) -> User:
    """The user whose password this is; ``Unauthorized`` otherwise, in the same time either way."""
    if not rules.is_storable(username) or not rules.is_storable(password):
        raise Unauthorized("username and password required")
    user = db.scalar(select(User).where(User.username == username, User.deleted_at.is_(None)))
    if not password_matches(user.password_hash if user else None, password):
        raise Unauthorized("wrong username or password")
    return user


def get_user(db, username=None, user_id=None) -> dict:
    if username is not None and not rules.is_storable(username):
        raise UserNotFound("no such user")
    query = select(User).where(User.username == username) if username is not None else select(User).where(User.id == user_id)
    user = db.scalar(query)
    if user is None or user.deleted_at is not None:
        raise UserNotFound("no such user")
    return user_dict(user)


def users_by_id(db, user_ids) -> dict:
    if not isinstance(user_ids, list) or len(user_ids) > 1000:
        raise InvalidParameters("up to 1000 user ids")
    users = db.scalars(select(User).where(User.id.in_(user_ids)))
    return {str(u.id): {"id": u.id, "username": u.username, "hide_flattrs": u.hide_flattrs} for u in users}
