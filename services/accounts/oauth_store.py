"""What OAuth 2 needs stored: client applications, authorization codes and the tokens issued
for them. The protocol itself (Authlib) runs in the gateway."""
from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from services.accounts import rules, tokens
from services.accounts.models import AuthorizationCode, OAuthClient
from services.common.errors import InvalidParameters, NotFound

CODE_LIFETIME = timedelta(minutes=10)


def _client(db, client_id) -> OAuthClient:
    client = db.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    if client is None:
        raise NotFound("no such client")
    return client


def register_client(db, owner_id, name, redirect_uri) -> dict:
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
        raise InvalidParameters("the application needs a name of 1 to 100 characters")
    redirect_uri = rules.validate_url(redirect_uri, "redirect_uri")
    client_id = secrets.token_urlsafe(16)
    secret = secrets.token_urlsafe(32)
    db.add(OAuthClient(client_id=client_id, secret_hash=tokens.digest(secret), name=name.strip(), redirect_uri=redirect_uri, owner_id=owner_id))
    db.commit()
    return {"client_id": client_id, "client_secret": secret, "name": name.strip(), "redirect_uri": redirect_uri}


def get_client(db, client_id) -> dict:
    if not rules.is_storable(client_id):
        raise NotFound("no such client")
    client = _client(db, client_id)
    return {"client_id": client.client_id, "name": client.name, "redirect_uri": client.redirect_uri}


def check_client_secret(db, client_id, secret) -> bool:
    if not rules.is_storable(client_id) or not rules.is_storable(secret):
        return False
    client = db.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    return bool(client and isinstance(secret, str) and hmac.compare_digest(client.secret_hash, tokens.digest(secret)))


def store_authorization_code(db, code, client_id, user_id, redirect_uri, scope) -> None:
    scopes = rules.parse_scopes(scope)
    client = _client(db, client_id)
    db.add(
        AuthorizationCode(
            code_hash=tokens.digest(code),
            client_id=client.id,
            user_id=user_id,
            redirect_uri=redirect_uri or client.redirect_uri,
            scopes=" ".join(scopes),
            expires_at=datetime.now(timezone.utc) + CODE_LIFETIME,
        )
    )
    db.commit()


def take_authorization_code(db, code, client_id) -> dict | None:
    """The grant behind a code, once: the code is deleted as it is read. None if unknown or expired."""
    if not isinstance(code, str) or not code:
        return None
    row = db.execute(
        select(AuthorizationCode, OAuthClient.client_id)
        .join(OAuthClient, OAuthClient.id == AuthorizationCode.client_id)
        .where(AuthorizationCode.code_hash == tokens.digest(code))
        .with_for_update(of=AuthorizationCode)
    ).first()
    if row is None:
        return None
    grant, owner_client = row
    db.delete(grant)
    db.commit()
    if owner_client != client_id or grant.expires_at < datetime.now(timezone.utc):
        return None
    return {"user_id": grant.user_id, "redirect_uri": grant.redirect_uri, "scope": grant.scopes}


def store_oauth_token(db, token, client_id, user_id, scope) -> None:
    client = _client(db, client_id)
    scopes = rules.parse_scopes(scope)
    tokens.add_token(db, token, user_id, "oauth", scopes, client.name, client.id)
    db.commit()
