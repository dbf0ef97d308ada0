"""The button: the embeddable iframe, the badge, the first-party flattr window, auto-submit and load.js.

The button lives on other people's sites, where the platform's cookies are third-party and
browsers block them. So the iframe (``/button/<id>``) and the badge (``/button/<id>.svg``) need no
cookie and set none: they show the count, and the iframe's link opens the flattr window
(``/flattr/<id>``), a small first-party page on the platform's own origin. There the visitor signs
in if needed and confirms with one click in a CSRF-protected POST form; the window cannot be
framed (``X-Frame-Options: DENY``, ``frame-ancestors 'none'``), so a third-party page cannot trick
anyone into clicking it. On ``ok`` it posts ``{"type": "flattr", "thing", "flattrs"}`` to the
window that opened it (the button iframe, same origin) and closes itself; the button listens and
shows the new count.

Counts for the iframe and the badge come from a short-lived per-process cache
(``services.gateway.button_cache``) that these views fill; a fresh entry's bytes are served by
``services.gateway.button_fast_path`` before Flask sees the request. A click through the flattr
window drops the thing's entry at once.

The REST API answers anonymous cross-origin GETs under ``/rest/v2/things`` (``lookup`` and the
thing it redirects to) with ``Access-Control-Allow-Origin: *`` so that ``load.js`` can find a
thing's id from its URL on any site; no credentials are allowed, and nothing else is opened.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from flask import Blueprint, Response, current_app, render_template, request, session, url_for
from markupsafe import escape

from services.common import settings
from services.common.paging import MAX_ID
from services.common.things import MAX_URL, AutoSubmit, BadAutoSubmit, auto_submit_from_query, auto_submit_from_url, title_from_url
from services.common.errors import DomainError, NotFound, UserNotFound
from services.gateway import representations as rep
from services.gateway import rpc as gateway_rpc
from services.gateway.button_cache import ButtonCache, Rendered, rendered
from services.gateway.button_fast_path import BADGE_RULE, FRAME_RULE, ButtonFastPath
from services.gateway.rpc import ServiceUnavailable
from services.gateway.views.flattr import ANSWERS
from services.gateway.views.web import login_required

button = Blueprint("button", __name__)

# The iframe's inline script and style are part of the cached page; nothing else may load.
BUTTON_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors *"
BADGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors *"

LOAD_JS = Path(__file__).resolve().parent.parent / "templates" / "button" / "load.js"

# The flattr window's answers, by the worker's status: (HTTP status, heading, explanation)
RESULTS = {
    "ok": (200, "Flattred!", "Thanks: this thing gets a share of your budget at the end of the period."),
    "flattr_once": (ANSWERS["flattr_once"][0], "Already flattred", "You have already flattred this thing this period."),
    "flattr_owner": (ANSWERS["flattr_owner"][0], "This is your own thing", "You cannot flattr your own thing."),
    "no_means": (
        ANSWERS["no_means"][0],
        "Not enough means",
        "Set a monthly budget and fund your wallet with at least that much to flattr things.",
    ),
    "not_found": (ANSWERS["not_found"][0], "No such thing", "This thing does not exist (any more)."),
}


@button.record_once
def _install(state):
    app = state.app
    ttl = app.config.get("BUTTON_CACHE_SECONDS")
    if ttl is None:
        ttl = settings.get_float("BUTTON_CACHE_SECONDS")
    cache = ButtonCache(float(ttl), app.extensions["rpc"])
    app.extensions["button_cache"] = cache
    app.wsgi_app = ButtonFastPath(app.wsgi_app, cache)


def _cache() -> ButtonCache:
    return current_app.extensions["button_cache"]


# -- cross-origin reads for load.js ------------------------------------------------------------------


@button.after_app_request
def _allow_cross_origin_thing_reads(response):
    """Anonymous GETs of ``/rest/v2/things/...`` may be read by scripts on any site (load.js).
    No credentials: a wildcard origin never lets a browser send or read the platform's cookies."""
    if request.method in ("GET", "HEAD") and request.path.startswith("/rest/v2/things/"):
        response.headers["Access-Control-Allow-Origin"] = "*"
    return response


# -- the iframe and the badge ------------------------------------------------------------------------


def _serve(page: Rendered) -> Response:
    return Response(page[0], 200, page[1])


def _unavailable_button():
    body = render_template("button/unavailable.html")
    return Response(body, 503, {"Retry-After": "5", "Cache-Control": "no-store", "Content-Security-Policy": BUTTON_CSP})


@button.get(FRAME_RULE)
def button_frame(thing_id):
    cache = _cache()
    try:
        entry = cache.get(thing_id)
    except ServiceUnavailable:
        return _unavailable_button()
    if not entry.found:
        body = render_template("button/not_found.html", thing_id=thing_id)
        return Response(body, 404, {"Cache-Control": "no-store", "Content-Security-Policy": BUTTON_CSP})
    if entry.html is None:
        body = render_template("button/button.html", entry=entry).encode()
        entry.html = rendered(body, "text/html; charset=utf-8", BUTTON_CSP, cache.cache_control)
    return _serve(entry.html)


def badge_svg(label: str, value: str, title: str, color: str = "#6a9f1c") -> bytes:
    """A flat two-part badge; widths from a per-character estimate (Verdana 11px)."""
    left, right = 6 * len(label) + 12, 7 * len(value) + 12
    width = left + right
    label_e, value_e, title_e = escape(label), escape(value), escape(title)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" aria-label="{label_e}: {value_e}">'
        f"<title>{title_e}</title>"
        f'<rect width="{left}" height="20" rx="3" fill="#555"/>'
        f'<rect x="{left - 4}" width="{right + 4}" height="20" rx="3" fill="{color}"/>'
        f'<rect x="{left - 4}" width="4" height="20" fill="{color}"/>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{left / 2}" y="14">{label_e}</text>'
        f'<text x="{left + right / 2}" y="14">{value_e}</text></g></svg>'
    ).encode()


@button.get(BADGE_RULE)
def button_badge(thing_id):
    cache = _cache()
    try:
        entry = cache.get(thing_id)
    except ServiceUnavailable:
        svg = badge_svg("flattr", "?", "the count is not available right now", "#9f9f9f")
        return Response(svg, 503, {"Content-Type": "image/svg+xml", "Retry-After": "5", "Cache-Control": "no-store"})
    if not entry.found:
        svg = badge_svg("flattr", "not found", "no such thing", "#9f9f9f")
        headers = {"Content-Type": "image/svg+xml", "Cache-Control": "no-store", "Content-Security-Policy": BADGE_CSP}
        return Response(svg, 404, headers)
    if entry.svg is None:
        body = badge_svg("flattr", str(entry.flattrs), f"{entry.title}: {entry.flattrs} flattrs")
        entry.svg = rendered(body, "image/svg+xml", BADGE_CSP, cache.cache_control, ("X-Content-Type-Options", "nosniff"))
    return _serve(entry.svg)


# -- load.js --------------------------------------------------------------------------------------


_load_js: tuple[bytes, str] | None = None


@button.get("/js/load.js")
def load_js():
    global _load_js
    if _load_js is None or current_app.debug:
        body = LOAD_JS.read_bytes()
        _load_js = (body, hashlib.sha256(body).hexdigest()[:20])
    body, etag = _load_js
    response = Response(body, 200, {"Content-Type": "application/javascript; charset=utf-8", "X-Content-Type-Options": "nosniff"})
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.set_etag(etag)
    return response.make_conditional(request)


# -- the first-party flattr window ---------------------------------------------------------------------


@button.after_request
def _first_party_pages_are_not_cached(response):
    # their framing is refused like every page's (services.gateway.security_headers)
    if request.endpoint in ("button.flattr_window", "button.flattr_auto", "button.auto_submit"):
        response.headers["Cache-Control"] = "no-store"
    return response


def _page_error(status: int, heading: str, text: str, **headers):
    body = render_template("button/message.html", heading=heading, text=text, error=None)
    return Response(body, status, headers)


def _unavailable_page():
    return _page_error(503, "Try again in a moment", "A part of the platform is not answering right now.", **{"Retry-After": "5"})


def _get_thing(thing_id: int) -> dict | None:
    if thing_id > MAX_ID:
        return None
    things = gateway_rpc.call("accounts", "get_things", [thing_id])
    return things[0] if things else None


def _click(thing_id: int) -> dict:
    answer = current_app.extensions["clicks"].flattr(session["user_id"], thing_id, "button")
    _cache().invalidate(thing_id)
    return answer


def _result_page(answer: dict):
    status = answer.get("status")
    if status not in RESULTS:
        return _unavailable_page()
    code, heading, text = RESULTS[status]
    thing = answer.get("thing")
    message = None
    if status == "ok" and thing:
        message = {"type": "flattr", "thing": thing["id"], "flattrs": int(thing.get("flattrs") or 0)}
    body = render_template("button/result.html", status=status, heading=heading, text=text, thing=thing, message=message)
    return Response(body, code)


@button.route("/flattr/<int:thing_id>", methods=["GET", "POST"])
@login_required
def flattr_window(thing_id):
    """GET shows one confirming button (never flattrs); POST (CSRF-checked by Flask-WTF) flattrs."""
    try:
        if request.method == "POST":
            if thing_id > MAX_ID:  # no such id can exist; the click path would choke on it
                return _result_page({"status": "not_found"})
            return _result_page(_click(thing_id))
        thing = _get_thing(thing_id)
        if thing is None:
            return _page_error(404, "No such thing", "This thing does not exist (any more).")
        counts = gateway_rpc.call("clicks", "counts", [thing_id], session["user_id"])
    except ServiceUnavailable:
        return _unavailable_page()
    state = counts.get(str(thing_id)) or {}
    own = bool(thing.get("owner")) and thing["owner"]["id"] == session["user_id"]
    return render_template(
        "button/confirm.html",
        thing=thing,
        flattrs=int(state.get("flattrs") or 0),
        flattred=bool(state.get("flattred")),
        own=own,
        action=url_for("button.flattr_window", thing_id=thing_id),
    )


# -- auto-submit -------------------------------------------------------------------------------------


def _auto_submit_url(auto: AutoSubmit) -> str:
    return f"{rep.base_url()}/submit/auto?{auto.query()}"


def _auto_from_url(value: str | None) -> tuple[str, AutoSubmit]:
    auto = auto_submit_from_url(value) if value and len(value) <= 2 * MAX_URL else None
    if auto is None:
        raise BadAutoSubmit("url must be an auto-submit address (…/submit/auto?user_id=…&url=…)")
    return value, auto


def _lookup(url: str) -> int | None:
    try:
        return gateway_rpc.call("accounts", "lookup_url", url)
    except NotFound:
        return None


def _auto_preview(auto: AutoSubmit) -> dict:
    """What the thing will be: the registered one if any, else a preview (owner must exist)."""
    thing_id = _lookup(auto.url)
    thing = _get_thing(thing_id) if thing_id else None
    if thing is not None:
        return {"registered": True, "thing": thing}
    owner = gateway_rpc.call("accounts", "get_user", username=auto.username)
    preview = {
        "title": auto.fields.get("title") or title_from_url(auto.url),
        "url": auto.url,
        "description": auto.fields.get("description", ""),
    }
    return {"registered": False, "thing": preview, "owner": owner["username"]}


def _auto_submit_page(auto: AutoSubmit, answer: Callable[[], Response | str]):
    """``answer()``, or the page that says why it could not be given: the link's user is unknown
    (also when the thing cannot be made for it), the link is refused, or a service is away."""
    try:
        return answer()
    except (UserNotFound, NotFound):
        return _page_error(404, "No such user", f"{auto.username} is not a user of this platform.")
    except DomainError as exc:
        return _page_error(exc.status if 400 <= exc.status < 500 else 400, "Not a valid auto-submit link", exc.description)
    except ServiceUnavailable:
        return _unavailable_page()


@button.get("/submit/auto")
def auto_submit():
    try:
        auto = auto_submit_from_query(request.args)
    except BadAutoSubmit as exc:
        return _page_error(400, "Not a valid auto-submit link", str(exc))

    def preview():
        flattr_url = url_for("button.flattr_auto", url=_auto_submit_url(auto))
        return render_template("button/auto_submit.html", flattr_url=flattr_url, **_auto_preview(auto))

    return _auto_submit_page(auto, preview)


@button.route("/flattr/auto", methods=["GET", "POST"])
@login_required
def flattr_auto():
    """The first-party window for an auto-submit URL: GET confirms, POST creates the thing on its
    first flattr (owned by the link's ``user_id``) and flattrs it."""
    try:
        auto_url, auto = _auto_from_url(request.values.get("url"))
    except BadAutoSubmit as exc:
        return _page_error(400, "Not a valid auto-submit link", str(exc))

    def answer():
        if request.method == "POST":
            return _result_page(_click(gateway_rpc.call("accounts", "thing_for_url", auto_url)["id"]))
        return render_template("button/confirm_auto.html", auto_url=auto_url, action=url_for("button.flattr_auto"), **_auto_preview(auto))

    return _auto_submit_page(auto, answer)
