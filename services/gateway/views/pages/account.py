"""Addresses and passwords by mail: confirming an address (the link mailed at sign-up or on a
change), and resetting a forgotten password. Links open a page with one button: following a link
changes nothing by itself (mail scanners open links too)."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from services.common.errors import Conflict, DomainError
from services.gateway import rpc
from services.gateway.views.pages.common import me, signed_in
from services.gateway.views.web import login_required, web


@web.get("/email/confirm/<token>")
def confirm_email(token):
    return render_template("pages/confirm_email.html", token=token)


@web.post("/email/confirm/<token>")
def confirm_email_now(token):
    try:
        user = rpc.call("accounts", "confirm_email", token)
    except Conflict as exc:
        return render_template("pages/confirm_email.html", token=None, error=f"{exc.description}."), 409
    except DomainError as exc:
        return render_template("pages/confirm_email.html", token=None, error=f"{exc.description}."), 400
    flash(f"Thank you: {user['email']} is confirmed.", "ok")
    return redirect(url_for("web.settings") if signed_in() else url_for("web.login"))


@web.post("/email/resend")
@login_required
def resend_confirmation():
    if rpc.call("accounts", "resend_confirmation", me()):
        flash("We sent you a new link; it works for 48 hours.", "ok")
    else:
        flash("There is no link to send: the address is confirmed already, or belongs to another account.", "error")
    return redirect(url_for("web.settings") + "#email")


@web.route("/password/reset", methods=["GET", "POST"])
def password_reset():
    if request.method == "GET":
        return render_template("pages/password_reset.html", sent=False)
    rpc.call("accounts", "request_password_reset", request.form.get("who", ""))
    # the same answer whoever was named: the page does not tell which accounts exist
    return render_template("pages/password_reset.html", sent=True)


@web.route("/password/reset/<token>", methods=["GET", "POST"])
def password_reset_form(token):
    if request.method == "GET":
        valid = rpc.call("accounts", "reset_link_valid", token)
        return render_template("pages/password_new.html", token=token if valid else None), 200 if valid else 400
    try:
        user = rpc.call("accounts", "reset_password", token, request.form.get("password", ""))
    except DomainError as exc:
        return render_template("pages/password_new.html", token=token, error=exc.description), 400
    flash(f"Your new password is set, {user['username']}. Sign in with it.", "ok")
    return redirect(url_for("web.login"))
