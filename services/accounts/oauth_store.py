"""What OAuth 2 needs stored: client applications, authorization codes and the tokens issued
for them. The protocol itself (Authlib) runs in the gateway."""
from __future__ import annotations

import hmac
import re
import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, select

from services.accounts import rules, tokens
from services.accounts.models import AuthorizationCode, OAuthClient
from services.common.errors import InvalidParameters, NotFound

CODE_LIFETIME = timedelta(minutes=10)
CODE_CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 4.2


def _client(db, client_id) -> OAuthClient:
    client = db.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    if client is None:
        raise NotFound("no such client")
    return client


def register_client(db, owner_id, name, redirect_uri, confidential=True) -> dict:
    """``confidential``: the application keeps a secret (a server); without one (a mobile or
    desktop app) it must prove each code exchange with PKCE instead."""
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
        raise InvalidParameters("the application needs a name of 1 to 100 characters")
    confidential = bool(confidential)
    redirect_uri = rules.validate_redirect_uri(redirect_uri, confidential)
    client_id = secrets.token_urlsafe(16)
    secret = secrets.token_urlsafe(32) if confidential else None
    secret_hash = tokens.digest(secret) if secret else None
    db.add(OAuthClient(client_id=client_id, secret_hash=secret_hash, name=name.strip(), redirect_uri=redirect_uri, owner_id=owner_id))
    db.commit()
    return {"client_id": client_id, "client_secret": secret, "name": name.strip(), "redirect_uri": redirect_uri, "confidential": confidential}


def get_client(db, client_id) -> dict:
    if not rules.is_storable(client_id):
        raise NotFound("no such client")
    client = _client(db, client_id)
    return {
        "client_id": client.client_id,
        "name": client.name,
        "redirect_uri": client.redirect_uri,
        "confidential": client.secret_hash is not None,
        # an intercepted code is useless without the secret, but the person consenting is told
        "plain_http": rules.is_plain_http_to_another_host(client.redirect_uri),
    }


def check_client_secret(db, client_id, secret) -> bool:
    if not rules.is_storable(client_id) or not rules.is_storable(secret):
        return False
    client = db.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    return bool(client and client.secret_hash and isinstance(secret, str) and hmac.compare_digest(client.secret_hash, tokens.digest(secret)))


def store_authorization_code(db, code, client_id, user_id, redirect_uri, scope, code_challenge=None) -> None:
    scopes = rules.parse_scopes(scope)
    if code_challenge is not None and not (isinstance(code_challenge, str) and CODE_CHALLENGE.fullmatch(code_challenge)):
        raise InvalidParameters("code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")
    client = _client(db, client_id)
    now = datetime.now(timezone.utc)
    # used and expired codes are kept only as long as a replay of them could come
    db.execute(delete(AuthorizationCode).where(AuthorizationCode.expires_at < now - CODE_LIFETIME))
    db.add(
        AuthorizationCode(
            code_hash=tokens.digest(code),
            client_id=client.id,
            user_id=user_id,
            redirect_uri=redirect_uri or client.redirect_uri,
            scopes=" ".join(scopes),
            expires_at=now + CODE_LIFETIME,
            code_challenge=code_challenge,
        )
    )
    db.commit()


def take_authorization_code(db, events, code, client_id) -> dict | None:
    """The grant behind a code, once. None if unknown, expired, another client's, or used
    before: a code used twice was stolen or replayed, and the token it issued is revoked."""
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
    now = datetime.now(timezone.utc)
    if grant.used_at is not None:
        grant.replayed_at = grant.replayed_at or now
        if grant.token_hash:
            tokens.revoke_by_digest(db, events, grant.token_hash)
        db.commit()
        return None
    grant.used_at = now
    db.commit()
    if owner_client != client_id or grant.expires_at < now:
        return None
    return {
        "code_id": grant.id,
        "user_id": grant.user_id,
        "redirect_uri": grant.redirect_uri,
        "scope": grant.scopes,
        "code_challenge": grant.code_challenge,
    }


def store_oauth_token(db, token, client_id, user_id, scope, code_id=None) -> None:
    """The token issued for a code (``code_id``) is remembered on it; should the code have been
    replayed meanwhile, the token is stored revoked."""
    client = _client(db, client_id)
    scopes = rules.parse_scopes(scope)
    tokens.add_token(db, token, user_id, "oauth", scopes, client.name, client.id)
    if code_id is not None:
        grant = db.get(AuthorizationCode, code_id, with_for_update=True)
        if grant is not None:
            grant.token_hash = tokens.digest(token)
            if grant.replayed_at is not None:
                db.flush()
                tokens.revoke_by_digest(db, None, grant.token_hash)
    db.commit()
