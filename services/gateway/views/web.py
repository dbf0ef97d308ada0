"""Web pages on the platform's own origin: sign-up, sign-in, client applications, OAuth consent.
The other pages of the web app add themselves to this blueprint (``views/pages``).

They use a signed session cookie, and every form carries a CSRF token (Flask-WTF).
"""
from __future__ import annotations

import time
from functools import wraps
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for

from services.common.errors import DomainError, RateLimited, Unauthorized
from services.gateway import rpc
from services.gateway.auth import check_password, check_second_factor
from services.gateway.oauth import User, requested_scopes
from services.gateway.password_throttle import TooManyAttempts
from services.gateway.views.pages.formatting import SCOPE_TEXT

web = Blueprint("web", __name__)



def safe_next(target: str | None) -> str:
    """Only local paths: a ``next`` that leaves the site would make sign-in an open redirect."""
    if not target:
        return url_for("web.home")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("web.home")
    return target


def _sign_in(user: dict) -> None:
    session.clear()
    session["user_id"] = user["id"]
    session["username"] = user["username"]
    session.permanent = True


def login_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if "user_id" not in session:
            return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapper


@web.route("/signup", methods=["GET", "POST"])
def signup():
    next_url = request.values.get("next")
    if request.method == "GET":
        return render_template("signup.html", form={}, next=next_url)
    form = request.form
    try:
        user = rpc.call("accounts", "register_user", form.get("username", ""), form.get("email", ""), form.get("password", ""))
    except DomainError as exc:
        status = 409 if exc.status == 409 else 400
        return render_template("signup.html", form=form, next=next_url, error=exc.description), status
    _sign_in(user)
    flash(f"Welcome, {user['username']}! We mailed a link to {user['email']}: open it to confirm your address.", "ok")
    return redirect(safe_next(next_url))


@web.route("/login", methods=["GET", "POST"])
def login():
    next_url = request.values.get("next")
    if request.method == "GET":
        return render_template("login.html", form={}, next=next_url)
    try:
        user = check_password(request.form.get("username", ""), request.form.get("password", ""))
    except Unauthorized:
        return render_template("login.html", form=request.form, next=next_url, error="Wrong username or password."), 401
    except TooManyAttempts as exc:
        error = f"Too many sign-in attempts for this account. Try again in {exc.retry_after} seconds."
        page = render_template("login.html", form=request.form, next=next_url, error=error)
        return page, 429, {"Retry-After": str(exc.retry_after)}
    if user.get("second_factor_required"):
        # the password was right; the session holds only that, for a few minutes, until the code comes
        session.clear()
        session["second_factor"] = {"user_id": user["id"], "username": user["username"], "until": time.time() + SECOND_FACTOR_SECONDS}
        return redirect(url_for("web.login_code", next=next_url))
    _sign_in(user)
    return redirect(safe_next(next_url))


SECOND_FACTOR_SECONDS = 300


@web.route("/login/code", methods=["GET", "POST"])
def login_code():
    """Sign-in's second step, for users who turned on two-factor sign-in: the authenticator app's
    code or a recovery code."""
    next_url = request.values.get("next")
    pending = session.get("second_factor")
    if not pending or pending["until"] < time.time():
        session.pop("second_factor", None)
        flash("Sign in again: the time for the code ran out." if pending else "Sign in first.", "error")
        return redirect(url_for("web.login", next=next_url))
    if request.method == "GET":
        return render_template("login_code.html", next=next_url)
    try:
        checked = check_second_factor(pending["user_id"], request.form.get("code", ""))
    except Unauthorized:
        return render_template("login_code.html", next=next_url, error="That code is not right. Try the app's current code."), 401
    except RateLimited as exc:
        return render_template("login_code.html", next=next_url, error=exc.description), 429
    _sign_in({"id": pending["user_id"], "username": pending["username"]})
    if checked["method"] == "recovery":
        flash(f"Signed in with a recovery code; {checked['recovery_codes_left']} are left. Make new ones in your settings "
              "if you lost your authenticator.", "ok")
    return redirect(safe_next(next_url))


@web.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("web.home"))


@web.route("/apps", methods=["GET", "POST"])
@login_required
def apps():
    created, error, status = None, None, 200
    if request.method == "POST":
        try:
            # an app that cannot keep a secret (mobile, desktop) gets none, and must use PKCE
            confidential = request.form.get("public") != "yes"
            form = request.form
            created = rpc.call("accounts", "register_client", session["user_id"], form.get("name", ""), form.get("redirect_uri", ""), confidential)
            status = 201
        except DomainError as exc:
            error, status = exc.description, 400
    clients = rpc.call("accounts", "list_clients", session["user_id"])
    return render_template("apps.html", created=created, error=error, clients=clients), status


@web.route("/oauth/authorize", methods=["GET", "POST"])
@login_required
def authorize():
    server = current_app.extensions["oauth_server"]
    user = User(session["user_id"])
    if request.method == "GET":
        from authlib.oauth2 import OAuth2Error

        try:
            grant = server.get_consent_grant(end_user=user)
        except OAuth2Error as error:
            return render_template("base.html", error=f"{error.error}: {error.description or 'invalid request'}"), 400
        scopes = requested_scopes(grant.request.scope)
        # old desktop clients registered plain http addresses: the code travels unencrypted
        warning = grant.client.plain_http and f"{grant.client.name} receives your authorization over plain http ({grant.client.redirect_uri}), which others on the network can read."
        return render_template("authorize.html", client_name=grant.client.name, scopes=scopes, scope_text=SCOPE_TEXT, warning=warning)
    if request.form.get("confirm") != "yes":
        return server.create_authorization_response(grant_user=None)
    return server.create_authorization_response(grant_user=user)


@web.post("/oauth/token")
def issue_token():
    return current_app.extensions["oauth_server"].create_token_response()
