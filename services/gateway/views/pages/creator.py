"""A creator's side: /dashboard (their things with flattrs this period and all time, revenue per
period, escrow waiting, payouts, verified sites), registering a thing, verifying a site, and /embed, the snippet generator (iframe
button, load.js anchor, SVG badge, the ``rel="payment"`` link for a page head and a feed) with a
live preview."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from markupsafe import Markup

from services.common.errors import Conflict, DomainError, InvalidParameters, NotFound
from services.common.money import Money, cents_from_text
from services.common.things import AutoSubmit, is_username, is_web_url
from services.gateway import representations as rep
from services.gateway import rpc
from services.gateway.views.api import catalog
from services.gateway.views.pages import charts
from services.gateway.views.pages.common import check_and_say, form_key, me, signed_in, with_counts
from services.gateway.views.web import login_required, web

THING_FORM_FIELDS = ("url", "title", "description", "category", "language", "tags")


def creator_things(user_id: int) -> list[dict]:
    """The user's things (hidden ones too) with flattrs all time and this period, and escrow."""
    things = with_counts(rpc.call("accounts", "user_things", user_id, True, 1, 100), user_id)
    if not things:
        return []
    ids = [t["id"] for t in things]
    this_period = rpc.call("clicks", "period_counts", ids)
    escrow = rpc.call("settlement", "escrow_of_things", ids)
    return [dict(t, period_flattrs=this_period.get(str(t["id"]), 0), escrow=(escrow.get(str(t["id"])) or {}).get("amount", 0)) for t in things]


@web.get("/dashboard")
@login_required
def dashboard():
    things = creator_things(me())
    revenue = rpc.call("settlement", "revenue", me())
    chart = charts.bar_chart("Revenue per period", [(p["period"], p["amount"]) for p in reversed(revenue["periods"])])
    return render_template(
        "pages/dashboard.html", things=things, revenue=revenue, revenue_chart=chart, payouts=rpc.call("settlement", "payouts", me()),
        terms=rpc.call("settlement", "payout_terms"), payout_key=form_key(), catalog=catalog(),
        escrow_total=sum(t["escrow"] for t in things), hosts=rpc.call("accounts", "list_hosts", me()),
    )


@web.post("/dashboard/hosts")
@login_required
def verify_host():
    """Verify a whole site at once: accounts reads its ``/.well-known/flattr`` file, or the owner
    mark in its home page, on its own pool; the page waits for the outcome as the API does."""
    check_and_say("request_host", request.form.get("host", "").strip(),
                  "Checked: {target} is yours. Your things on it are verified, and their escrow is on its way to your revenue.", "the site")
    return redirect(url_for("web.dashboard") + "#sites")


@web.post("/dashboard/hosts/<host>/give-up")
@login_required
def give_up_host(host):
    try:
        rpc.call("accounts", "give_up_host", me(), host)
        flash(f"{host} is no longer verified as yours.", "ok")
    except DomainError as exc:
        flash(exc.description, "error")
    return redirect(url_for("web.dashboard") + "#sites")


@web.post("/dashboard/payouts")
@login_required
def request_payout():
    try:
        amount = cents_from_text(request.form.get("amount", ""))
    except ValueError as exc:
        flash(f"The amount: {exc}.", "error")
        return redirect(url_for("web.dashboard") + "#payouts")
    try:
        result = rpc.call("settlement", "request_payout", me(), amount, request.form.get("idempotency_key", ""))
        payout = result["payout"]
        flash(f"Payout of {Money(payout['amount'], payout['currency'])} requested: {payout['state']}. "
              "It is paid in a moment; we mail you when it is done.", "ok")
    except DomainError as exc:
        flash(exc.description, "error")
    return redirect(url_for("web.dashboard") + "#payouts")


@web.post("/dashboard/things")
@login_required
def register_thing():
    fields = {name: request.form.get(name, "").strip() for name in THING_FORM_FIELDS}
    fields = {k: v for k, v in fields.items() if v}
    fields["hidden"] = request.form.get("hidden") == "on"
    try:
        created = rpc.call("accounts", "create_thing", me(), fields)
    except Conflict as exc:
        if exc.existing_id:
            flash("A thing with this address exists already. If it is yours, check your page below to claim it.", "error")
            return redirect(url_for("web.thing_page", thing_id=exc.existing_id))
        flash(exc.description, "error")
        return redirect(url_for("web.dashboard") + "#register")
    except DomainError as exc:
        flash(exc.description, "error")
        return redirect(url_for("web.dashboard") + "#register")
    flash("Registered. Put its button on your page with one of the snippets below.", "ok")
    return redirect(url_for("web.embed", thing=created["id"]))


def snippets(base: str, thing: dict | None, auto: AutoSubmit | None) -> list[dict]:
    """The embed snippets for a registered thing, or for a page not registered yet (its
    auto-submit link registers it on the first flattr)."""
    out = []
    if thing is not None:
        title = thing["title"]
        out.append({"name": "Button (iframe)", "id": "iframe", "hint": "Works everywhere an iframe does; no script, no cookies.",
                    "code": f'<iframe src="{base}/button/{thing["id"]}" title="Flattr: {Markup.escape(title)}" width="160" height="24" '
                            f'style="border:0;overflow:hidden" loading="lazy"></iframe>'})
        out.append({"name": "Button (load.js)", "id": "loadjs", "hint": "The script turns the link into the button; without scripts it stays a link.",
                    "code": f'<script src="{base}/js/load.js" async></script>\n'
                            f'<a class="FlattrButton" href="{Markup.escape(thing["url"])}">Flattr {Markup.escape(title)}</a>'})
        out.append({"name": "Badge (SVG)", "id": "badge", "hint": "An image with the count, for places that allow no iframes or scripts (a README).",
                    "code": f'<a href="{base}/thing/{thing["id"]}"><img src="{base}/button/{thing["id"]}.svg" alt="Flattr {Markup.escape(title)}"></a>'})
        owner = (thing.get("owner") or {}).get("username")
        if owner:
            auto = AutoSubmit(owner, thing["url"], {})
    if auto is not None:
        link = f"{base}/submit/auto?{auto.query()}"
        if thing is None:
            attributes = " ".join(f'data-flattr-{k}="{Markup.escape(v)}"' for k, v in auto.fields.items())
            out.append({"name": "Button (load.js) for a page not registered yet", "id": "loadjs-auto",
                        "hint": "Registered as your thing on its first flattr.",
                        "code": f'<script src="{base}/js/load.js" async></script>\n'
                                f'<a class="FlattrButton" href="{Markup.escape(auto.url)}" data-flattr-uid="{auto.username}"'
                                f'{" " + attributes if attributes else ""}>Flattr this</a>'})
        out.append({"name": "Payment link for the page's <head>", "id": "head",
                    "hint": "Tells feed readers and browsers how to flattr the page, and proves the page is yours when you claim it.",
                    "code": f'<link rel="payment" href="{Markup.escape(link)}" type="text/html">\n'
                            f'<meta name="flattr:owner" content="{auto.username}">'})
        out.append({"name": "Payment link in a feed", "id": "feed", "hint": "Inside an RSS <item> (with the Atom namespace) or an Atom <entry>.",
                    "code": f'<atom:link rel="payment" href="{Markup.escape(link)}" type="text/html"/>\n'
                            f'<!-- in an Atom feed: --> <link rel="payment" href="{Markup.escape(link)}" type="text/html"/>'})
    return out


@web.get("/embed")
def embed():
    """The snippet generator: ``thing`` (an id), or ``url`` (and ``title``) of a page; GET only,
    so it works without scripts and a link to it shows the same snippets."""
    base = rep.base_url()
    thing, auto, problem = None, None, None
    wanted_id, url = request.args.get("thing", "").strip(), request.args.get("url", "").strip()
    title = request.args.get("title", "").strip()
    try:
        if wanted_id.isdigit() and len(wanted_id) < 19:
            found = rpc.call("accounts", "get_things", [int(wanted_id)])
            if not found:
                raise NotFound("no such thing")
            thing = with_counts(found)[0]
        elif url:
            if not is_web_url(url):
                raise InvalidParameters("the address must start with http:// or https://")
            try:
                thing = with_counts(rpc.call("accounts", "get_things", [rpc.call("accounts", "lookup_url", url)]))[0]
            except NotFound:
                username = session.get("username") or request.args.get("uid", "").strip()
                if not is_username(username):
                    raise InvalidParameters("this page is not registered; sign in to make a button that registers it as yours") from None
                auto = AutoSubmit(username, url, {"title": title} if 5 <= len(title) <= 100 else {})
    except DomainError as exc:
        problem = exc.description
    mine = with_counts(rpc.call("accounts", "user_things", me(), True, 1, 100), me()) if signed_in() else []
    return render_template("pages/embed.html", thing=thing, auto=auto, snippets=snippets(base, thing, auto), problem=problem,
                           mine=mine, base=base, url=url, title=title, wanted_id=wanted_id)
