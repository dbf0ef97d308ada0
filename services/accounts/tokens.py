"""Access tokens: personal tokens a user makes, OAuth tokens a client application gets, and the
checks every authenticated request makes through the gateway.

A token is stored only as its SHA-256: tokens are random and long, so a plain hash is a safe
lookup key (no salt or slow hash needed), and a copy of the table gives no usable token."""
from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import func, select, update

from services.accounts import rules
from services.accounts.models import AccessToken, User
from services.common.errors import InvalidParameters, NotFound
from services.common.things import MAX_TOKEN_NAME
from services.common.times import unix

MAX_TOKENS_PER_CHECK = 200


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def add_token(db, token: str, user_id, kind: str, scopes: list[str], name: str = "", client_pk=None) -> None:
    """Store ``token`` (its digest) in the session's transaction; the caller commits."""
    db.add(AccessToken(token_hash=digest(token), user_id=user_id, kind=kind, client_id=client_pk, scopes=" ".join(scopes), name=name))


def create_personal_token(db, user_id, scope, name="") -> dict:
    scopes = rules.parse_personal_scopes(scope)
    name = name or ""
    if not isinstance(name, str) or len(name) > MAX_TOKEN_NAME or not rules.is_storable(name):
        raise InvalidParameters(f"name must be text of at most {MAX_TOKEN_NAME} characters")
    token = secrets.token_urlsafe(32)
    add_token(db, token, user_id, "personal", scopes, name)
    db.commit()
    return {"access_token": token, "token_type": "bearer", "scope": " ".join(scopes)}


def list_tokens(db, user_id) -> list[dict]:
    rows = db.scalars(
        select(AccessToken).where(AccessToken.user_id == user_id, AccessToken.revoked_at.is_(None)).order_by(AccessToken.id)
    )
    return [{"id": t.id, "name": t.name, "scope": t.scopes, "kind": t.kind, "created_at": unix(t.created_at)} for t in rows]


def revoke_token(db, events, user_id, token_id) -> None:
    result = db.execute(
        update(AccessToken)
        .where(AccessToken.id == token_id, AccessToken.user_id == user_id, AccessToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    if result.rowcount == 0:
        raise NotFound("no such token")
    # every gateway drops the token from its cache when it hears this
    events.record(db, "token.revoked", {"token_id": token_id, "user_id": user_id})
    db.commit()


def revoke_by_digest(db, events, token_hash: str) -> None:
    """Revoke the live token stored as ``token_hash`` (a replayed OAuth code's), in the caller's
    transaction; ``events`` None: nobody can have seen it yet, nothing to announce."""
    revoked = db.execute(
        update(AccessToken)
        .where(AccessToken.token_hash == token_hash, AccessToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(AccessToken.id, AccessToken.user_id)
    ).first()
    if revoked is not None and events is not None:
        events.record(db, "token.revoked", {"token_id": revoked.id, "user_id": revoked.user_id})


def authenticate_tokens(db, tokens) -> dict:
    """Many tokens checked in one call: ``{sha256 of the token: caller}`` for the valid ones
    (the gateway keys its cache by that digest; the tokens themselves are not sent back)."""
    if not isinstance(tokens, list) or len(tokens) > MAX_TOKENS_PER_CHECK or not all(isinstance(t, str) and t for t in tokens):
        raise InvalidParameters(f"up to {MAX_TOKENS_PER_CHECK} non-empty token strings")
    digests = sorted({digest(t) for t in tokens})
    rows = db.execute(
        select(AccessToken, User.username)
        .join(User, User.id == AccessToken.user_id)
        .where(AccessToken.token_hash.in_(digests), AccessToken.revoked_at.is_(None))
    ).all()
    return {
        access.token_hash: {
            "user_id": access.user_id,
            "username": username,
            "scopes": access.scopes.split(),
            "kind": access.kind,
            "token_id": access.id,
        }
        for access, username in rows
    }
