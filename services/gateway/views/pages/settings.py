"""/settings: profile, password, address, privacy, two-factor sign-in, personal tokens and
authorized applications (list, revoke), registered applications, and the data export."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import segno
from flask import Response, flash, redirect, render_template, request, session, url_for
from markupsafe import Markup

from services.common.errors import DomainError, InvalidParameters, Unauthorized
from services.gateway import rpc
from services.gateway.auth import check_second_factor
from services.gateway.views.pages.common import me
from services.gateway.views.pages.formatting import SCOPE_TEXT
from services.gateway.views.web import login_required, web

PROFILE_FIELDS = ("firstname", "lastname", "about", "city", "country", "avatar")


def _back(anchor: str):
    return redirect(url_for("web.settings") + f"#{anchor}")


@web.get("/settings")
@login_required
def settings():
    user = rpc.call("accounts", "get_user", user_id=me())
    tokens = rpc.call("accounts", "list_tokens", me())
    return render_template(
        "pages/settings.html", user=user, personal=[t for t in tokens if t["kind"] == "personal"],
        authorized=[t for t in tokens if t["kind"] == "oauth"], clients=rpc.call("accounts", "list_clients", me()),
        scopes=SCOPE_TEXT, new_token=session.pop("new_token", None), two_factor=rpc.call("accounts", "two_factor_status", me()),
    )


@web.post("/settings/profile")
@login_required
def update_profile():
    try:
        rpc.call("accounts", "update_profile", me(), {name: request.form.get(name, "") for name in PROFILE_FIELDS})
        flash("Your profile is saved.", "ok")
    except DomainError as exc:
        flash(exc.description, "error")
    return _back("profile")


@web.post("/settings/password")
@login_required
def change_password():
    if request.form.get("new", "") != request.form.get("repeat", ""):
        flash("The two new passwords differ.", "error")
        return _back("password")
    try:
        rpc.call("accounts", "change_password", me(), request.form.get("current", ""), request.form.get("new", ""))
        flash("Your password is changed.", "ok")
    except Unauthorized:
        flash("Your current password is not that one.", "error")
    except DomainError as exc:
        flash(exc.description, "error")
    return _back("password")


@web.post("/settings/email")
@login_required
def change_email():
    try:
        changed = rpc.call("accounts", "request_email_change", me(), request.form.get("password", ""), request.form.get("email", ""))
        flash(f"We sent a link to {changed['email']}: your address changes when you open it.", "ok")
    except Unauthorized:
        flash("Your password is not that one.", "error")
    except DomainError as exc:
        flash(exc.description, "error")
    return _back("email")


@web.post("/settings/privacy")
@login_required
def set_privacy():
    rpc.call("accounts", "set_privacy", me(), request.form.get("hide_flattrs") == "on", request.form.get("hide_earnings") == "on")
    flash("Your privacy choices are saved.", "ok")
    return _back("privacy")


@web.post("/settings/tokens")
@login_required
def create_token():
    scopes = [s for s in request.form.getlist("scope") if s in SCOPE_TEXT]
    try:
        user = rpc.call("accounts", "authenticate_password", session["username"], request.form.get("password", ""))
    except Unauthorized:
        flash("Your password is not that one.", "error")
        return _back("tokens")
    try:
        if user["second_factor_required"]:
            check_second_factor(me(), request.form.get("code", ""))
        token = rpc.call("accounts", "create_personal_token", me(), " ".join(scopes), request.form.get("name", "").strip())
    except Unauthorized:
        flash("That two-factor code is not right.", "error")
        return _back("tokens")
    except DomainError as exc:
        flash(exc.description, "error")
        return _back("tokens")
    # shown once, on the page the redirect leads to, then gone from the session
    session["new_token"] = token
    return _back("tokens")


@web.post("/settings/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id):
    try:
        rpc.call("accounts", "revoke_token", me(), token_id)
        flash("Revoked: it stops working at once.", "ok")
    except DomainError as exc:
        flash(exc.description, "error")
    return _back(request.form.get("back", "tokens"))


# -- two-factor sign-in (services.accounts.two_factor keeps the secret and checks the codes) --


def _setup_page(secret: str, provisioning_uri: str, error: str | None = None, status: int = 200):
    qr = Markup(segno.make(provisioning_uri, error="m").svg_inline(scale=5, border=2, title="QR code of your two-factor secret"))
    return render_template("pages/two_factor.html", step="setup", secret=secret, provisioning_uri=provisioning_uri, qr=qr,
                           error=error), status


def _codes_page(codes: list[str], fresh_start: bool):
    return render_template("pages/two_factor.html", step="codes", codes=codes, fresh_start=fresh_start)


@web.post("/settings/two-factor")
@login_required
def two_factor_begin():
    try:
        started = rpc.call("accounts", "begin_two_factor", me())
    except DomainError as exc:
        flash(exc.description, "error")
        return _back("two-factor")
    return _setup_page(started["secret"], started["provisioning_uri"])


@web.post("/settings/two-factor/confirm")
@login_required
def two_factor_confirm():
    try:
        done = rpc.call("accounts", "confirm_two_factor", me(), request.form.get("code", ""))
    except InvalidParameters as exc:
        # the secret is accounts' (sealed); the page shows again what it showed, from its own form
        return _setup_page(request.form.get("secret", ""), request.form.get("provisioning_uri", ""), exc.description, 400)
    except DomainError as exc:
        flash(exc.description, "error")
        return _back("two-factor")
    return _codes_page(done["recovery_codes"], True)


@web.post("/settings/two-factor/recovery-codes")
@login_required
def two_factor_new_codes():
    try:
        made = rpc.call("accounts", "new_recovery_codes", me(), request.form.get("code", ""))
    except Unauthorized:
        flash("That code is not right: new recovery codes need your app's current code (or a recovery code).", "error")
        return _back("two-factor")
    except DomainError as exc:
        flash(exc.description, "error")
        return _back("two-factor")
    return _codes_page(made["recovery_codes"], False)


@web.post("/settings/two-factor/off")
@login_required
def two_factor_off():
    try:
        rpc.call("accounts", "disable_two_factor", me(), request.form.get("code", ""))
        flash("Two-factor sign-in is off: your password alone signs you in.", "ok")
    except Unauthorized:
        flash("That code is not right: turning two-factor sign-in off needs your app's current code (or a recovery code).", "error")
    except DomainError as exc:
        flash(exc.description, "error")
    return _back("two-factor")


@web.route("/settings/close", methods=["GET", "POST"])
@login_required
def close_account():
    """Closing the account: what happens to the money first, then the password and the username."""
    if request.method == "POST":
        if request.form.get("username", "") != session["username"]:
            flash("Type your username to confirm.", "error")
            return redirect(url_for("web.close_account"))
        try:
            rpc.call("accounts", "close_account", me(), request.form.get("password", ""))
        except Unauthorized:
            flash("Your password is not that one.", "error")
            return redirect(url_for("web.close_account"))
        session.clear()
        flash("Your account is closed. What your wallet and revenue hold is paid out to you once this period is settled.", "ok")
        return redirect(url_for("web.home"))
    return render_template("pages/close_account.html", wallet=rpc.call("settlement", "wallet", me()),
                           revenue=rpc.call("settlement", "revenue", me()))


@web.get("/settings/export")
@login_required
def export():
    """Everything the platform holds about the user, as one JSON file: each service's part."""
    data = {
        "exported_at": datetime.now(timezone.utc).isoformat(),
        "accounts": rpc.call("accounts", "export_user", me()),
        "clicks": rpc.call("clicks", "export_user", me()),
        "settlement": rpc.call("settlement", "export_user", me()),
    }
    name = f"flattr-{session['username']}-{datetime.now(timezone.utc):%Y%m%d}.json"
    return Response(json.dumps(data, indent=2), mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})
