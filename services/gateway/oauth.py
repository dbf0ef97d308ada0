"""OAuth2 authorization-code flow (as Flattr's API had), with Authlib doing the protocol.

Authlib validates requests, client authentication, redirect URIs, scopes and error answers; the
clients, codes and tokens live in the accounts service, reached by RPC. Codes and tokens are
stored hashed there. On top of what Flattr had:

- PKCE (RFC 7636, S256 only): supported for every client, required for clients without a secret
  (mobile and desktop apps, which authenticate to the token endpoint with their id alone);
- a code works once; a code used again was stolen or replayed, and the token it issued is
  revoked (accounts' ``take_authorization_code``);
- the token endpoint reads the form body of RFC 6749 and also a JSON object, as old Flattr
  clients (gPodder 3.x) sent it.
"""
from __future__ import annotations

import re

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.requests import OAuth2Payload
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import request as flask_request
from werkzeug.datastructures import CombinedMultiDict, MultiDict

from services.common.errors import NotFound
from services.gateway import rpc

SCOPES = ("flattr", "thing", "email", "extendedread")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")


def requested_scopes(scope: str | None) -> list[str]:
    """The known scopes asked for, space- or comma-separated (Flattr's own clients used commas)."""
    return [s for s in re.split(r"[\s,]+", scope or "") if s in SCOPES]


class Client(ClientMixin):
    """A client application as accounts stores it; ``confidential``: it has a secret."""

    def __init__(self, data: dict):
        self.client_id = data["client_id"]
        self.name = data["name"]
        self.redirect_uri = data["redirect_uri"]
        self.confidential = data["confidential"]
        self.plain_http = data["plain_http"]

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uri

    def get_allowed_scope(self, scope):
        return " ".join(requested_scopes(scope))

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri == self.redirect_uri

    def check_client_secret(self, client_secret):
        return self.confidential and bool(rpc.call("accounts", "check_client_secret", self.client_id, client_secret))

    def check_endpoint_auth_method(self, method, endpoint):
        if endpoint != "token":
            return True
        return method in SECRET_METHODS if self.confidential else method == "none"

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


class Grant:
    """What ``take_authorization_code`` answered, in the shape Authlib asks of a stored code."""

    def __init__(self, data: dict):
        self.code_id = data["code_id"]
        self.user_id = data["user_id"]
        self.redirect_uri = data["redirect_uri"]
        self.scope = data["scope"]
        self.code_challenge = data["code_challenge"]
        self.code_challenge_method = "S256" if self.code_challenge else None

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope


class User:
    def __init__(self, user_id: int):
        self.id = user_id

    def get_user_id(self):
        return self.id


class S256Challenge(CodeChallenge):
    """PKCE with S256 only (``plain`` proves nothing against whoever saw the request), and a
    challenge asked for at authorization from a client without a secret, so nobody consents to
    a code that could never be exchanged."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant, redirect_uri):
        payload = grant.request.payload.data
        if not grant.client.confidential and not payload.get("code_challenge"):
            raise InvalidRequestError("a client without a secret must send a PKCE code_challenge (S256)")
        if payload.get("code_challenge") and payload.get("code_challenge_method", "S256") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = [*SECRET_METHODS, "none"]

    def save_authorization_code(self, code, request):
        challenge = request.payload.data.get("code_challenge") or None
        rpc.call(
            "accounts", "store_authorization_code", code, request.client.client_id, request.user.id,
            request.payload.redirect_uri, request.scope or "", challenge,
        )

    def query_authorization_code(self, code, client):
        data = rpc.call("accounts", "take_authorization_code", code, client.client_id)
        return Grant(data) if data else None

    def delete_authorization_code(self, authorization_code):
        # taken (marked used) as it was read: a second use revokes what it issued
        pass

    def authenticate_user(self, authorization_code):
        return User(authorization_code.user_id)


class _JsonAsForm(OAuth2Payload):
    def __init__(self, fields):
        self._fields = fields

    @property
    def data(self):
        return self._fields

    @property
    def datalist(self):
        return {key: self._fields.getlist(key) for key in self._fields}


class TokenRequestFromJson(FlaskOAuth2Request):
    """A token request whose body is a JSON object, read as the form it stands for."""

    def __init__(self, request, fields: MultiDict):
        super().__init__(request)
        self._fields = fields
        self.payload = _JsonAsForm(CombinedMultiDict([request.args, fields]))

    @property
    def form(self):
        return self._fields


class FlattrAuthorizationServer(AuthorizationServer):
    def create_oauth2_request(self, request):
        if flask_request.method == "POST" and flask_request.is_json:
            body = flask_request.get_json(silent=True)
            if not isinstance(body, dict) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in body.values()):
                return FlaskOAuth2Request(flask_request)  # Authlib answers the empty form: invalid_request
            return TokenRequestFromJson(flask_request, MultiDict({k: str(v) for k, v in body.items()}))
        return super().create_oauth2_request(request)


def _query_client(client_id):
    try:
        return Client(rpc.call("accounts", "get_client", client_id))
    except NotFound:
        return None


def _save_token(token, request):
    code = getattr(request, "authorization_code", None)
    rpc.call(
        "accounts", "store_oauth_token", token["access_token"], request.client.client_id, request.user.id,
        token.get("scope", ""), code.code_id if code is not None else None,
    )


def init_oauth(app) -> AuthorizationServer:
    # Flattr's tokens did not expire; revoking is how a user withdraws access.
    app.config.setdefault("OAUTH2_TOKEN_EXPIRES_IN", {"authorization_code": 0})
    server = FlattrAuthorizationServer(app, query_client=_query_client, save_token=_save_token)
    server.register_grant(AuthorizationCodeGrant, [S256Challenge(required=True)])
    app.extensions["oauth_server"] = server
    return server
