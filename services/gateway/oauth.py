"""OAuth2 authorization-code flow (as Flattr's API had), with Authlib doing the protocol.

Authlib validates requests, client authentication, redirect URIs, scopes and error answers; the
clients, codes and tokens live in the accounts service, reached by RPC. Codes and tokens are
stored hashed there; a code is taken (deleted) as it is exchanged, so it works once.
"""
from __future__ import annotations

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants

from services.gateway import rpc

SCOPES = ("flattr", "thing", "email", "extendedread")


class Client(ClientMixin):
    def __init__(self, data: dict):
        self.client_id = data["client_id"]
        self.name = data["name"]
        self.redirect_uri = data["redirect_uri"]

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uri

    def get_allowed_scope(self, scope):
        if not scope:
            return ""
        return " ".join(s for s in scope.split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri == self.redirect_uri

    def check_client_secret(self, client_secret):
        return bool(rpc.call("accounts", "check_client_secret", self.client_id, client_secret))

    def check_endpoint_auth_method(self, method, endpoint):
        return endpoint != "token" or method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


class Grant:
    """What ``take_authorization_code`` answered, in the shape Authlib asks of a stored code."""

    def __init__(self, data: dict):
        self.user_id = data["user_id"]
        self.redirect_uri = data["redirect_uri"]
        self.scope = data["scope"]

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope


class User:
    def __init__(self, user_id: int):
        self.id = user_id

    def get_user_id(self):
        return self.id


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def save_authorization_code(self, code, request):
        rpc.call("accounts", "store_authorization_code", code, request.client.client_id, request.user.id, request.payload.redirect_uri, request.scope or "")

    def query_authorization_code(self, code, client):
        data = rpc.call("accounts", "take_authorization_code", code, client.client_id)
        return Grant(data) if data else None

    def delete_authorization_code(self, authorization_code):
        # already deleted when it was taken
        pass

    def authenticate_user(self, authorization_code):
        return User(authorization_code.user_id)


def _query_client(client_id):
    from services.common.errors import NotFound

    try:
        return Client(rpc.call("accounts", "get_client", client_id))
    except NotFound:
        return None


def _save_token(token, request):
    rpc.call("accounts", "store_oauth_token", token["access_token"], request.client.client_id, request.user.id, token.get("scope", ""))


def init_oauth(app) -> AuthorizationServer:
    # Flattr's tokens did not expire; revoking is how a user withdraws access.
    app.config.setdefault("OAUTH2_TOKEN_EXPIRES_IN", {"authorization_code": 0})
    server = AuthorizationServer(app, query_client=_query_client, save_token=_save_token)
    server.register_grant(AuthorizationCodeGrant)
    app.extensions["oauth_server"] = server
    return server
