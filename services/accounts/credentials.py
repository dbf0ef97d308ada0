"""Users and their passwords: sign-up, sign-in and the user records other services read.

Passwords are hashed with Argon2id (argon2-cffi), in a real thread (``tpool``): hashing takes
tens of milliseconds of CPU that would otherwise stall every green thread of the process."""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from eventlet import tpool
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from services.accounts import rules
from services.accounts.models import User
from services.common.errors import Conflict, InvalidParameters, Unauthorized, UserNotFound
from services.common.times import unix

_hasher = PasswordHasher()
# Verifying against this keeps the time of a log-in with an unknown username like a known one.
_DUMMY_HASH = _hasher.hash("not a real password")


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
    }


def register_user(db, events, username, email, password, profile=None) -> dict:
    username = rules.validate_username(username)
    email = rules.validate_email(email)
    password = rules.validate_password(password)
    profile = rules.validate_profile(profile or {})
    if db.scalar(select(User.id).where(User.username == username)):
        raise Conflict("username is taken")
    if db.scalar(select(User.id).where(func.lower(User.email) == email.lower())):
        raise Conflict("email is already registered")
    user = User(username=username, email=email, password_hash=tpool.execute(_hasher.hash, password), **profile)
    db.add(user)
    try:
        db.flush()
    except IntegrityError:
        raise Conflict("username or email is already registered") from None
    events.record(db, "user.registered", {"user_id": user.id, "username": user.username})
    db.commit()
    return user_dict(user)


def check_password(db, username, password) -> User:
    """The user whose password this is; ``Unauthorized`` otherwise, in the same time either way."""
    if not rules.is_storable(username) or not rules.is_storable(password):
        raise Unauthorized("username and password required")
    user = db.scalar(select(User).where(User.username == username))
    stored = user.password_hash if user else _DUMMY_HASH
    try:
        tpool.execute(_hasher.verify, stored, password)
    except (VerificationError, InvalidHashError):
        raise Unauthorized("wrong username or password") from None
    if user is None:
        raise Unauthorized("wrong username or password")
    return user


def get_user(db, username=None, user_id=None) -> dict:
    if username is not None and not rules.is_storable(username):
        raise UserNotFound("no such user")
    query = select(User).where(User.username == username) if username is not None else select(User).where(User.id == user_id)
    user = db.scalar(query)
    if user is None:
        raise UserNotFound("no such user")
    return user_dict(user)


def users_by_id(db, user_ids) -> dict:
    if not isinstance(user_ids, list) or len(user_ids) > 1000:
        raise InvalidParameters("up to 1000 user ids")
    users = db.scalars(select(User).where(User.id.in_(user_ids)))
    return {str(u.id): {"id": u.id, "username": u.username} for u in users}
