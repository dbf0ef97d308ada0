"""No page of the platform may be framed by another site, but the button's iframe and badge.

A framed sign-in, consent or application page lets another site dress it up and steer clicks
(clickjacking). Every answer says ``X-Frame-Options: DENY`` and ``frame-ancestors 'none'`` (added
to a Content-Security-Policy the answer has, or as its own), except the answers of the views that
exist to be embedded; those set their own policy (``frame-ancestors *``). Their cached bytes,
served by ``services.gateway.button_fast_path``, never pass here.
"""
from __future__ import annotations

from flask import Flask, request

EMBEDDABLE = frozenset({"button.button_frame", "button.button_badge"})
NOT_FRAMED = "frame-ancestors 'none'"


def refuse_framing(response):
    if request.endpoint in EMBEDDABLE:
        return response
    response.headers["X-Frame-Options"] = "DENY"
    policy = response.headers.get("Content-Security-Policy")
    if not policy:
        response.headers["Content-Security-Policy"] = NOT_FRAMED
    elif "frame-ancestors" not in policy:
        response.headers["Content-Security-Policy"] = f"{policy.rstrip('; ')}; {NOT_FRAMED}"
    return response


def init(app: Flask) -> None:
    app.after_request(refuse_framing)
