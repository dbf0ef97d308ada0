"""A reader's money: /wallet (balance, budget, deposits, when the period closes and what it will
charge), /flattrs (this period's flattrs with the share each would get, past periods,
subscriptions) and /statements (where each cent went, per period, with a plot of spending).
Every figure is the settlement service's: the shares a period would give come from its rules
(``projected_period``), the settled ones from its ledger."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from services.common.errors import DomainError, InvalidParameters, NotFound, PaymentDeclined, ProviderError
from services.common.money import Money, cents_from_text
from services.common.periods import is_period_id
from services.gateway import rpc
from services.gateway.views.pages import charts
from services.gateway.views.pages.common import form_key, me, things_by_id
from services.gateway.views.web import login_required, web


def period_overview(user_id: int) -> dict:
    """The wallet, the open period with the reader's clicks, and what settling it now would do."""
    wallet = rpc.call("settlement", "wallet", user_id)
    period = rpc.call("clicks", "reader_period", user_id)
    projection = rpc.call("settlement", "projected_period", user_id, [c["thing_id"] for c in period["clicks"]])
    return {"wallet": wallet, "period": period, "projection": projection, "clicks": len(period["clicks"])}


def _cents(field: str) -> int:
    try:
        return cents_from_text(request.form.get(field, ""))
    except ValueError as exc:
        raise InvalidParameters(f"The amount: {exc}.") from None


@web.get("/wallet")
@login_required
def wallet():
    return render_template("pages/wallet.html", overview=period_overview(me()), deposit_key=form_key())


@web.post("/wallet/budget")
@login_required
def set_budget():
    try:
        budget = rpc.call("accounts", "set_budget", me(), _cents("amount"))
        flash(f"Your monthly budget is {Money(budget['amount'], budget['currency'])}.", "ok")
    except DomainError as exc:
        flash(exc.description, "error")
    return redirect(url_for("web.wallet"))


@web.post("/wallet/deposits")
@login_required
def deposit():
    try:
        amount = _cents("amount")
        result = rpc.call("settlement", "deposit", me(), amount, request.form.get("idempotency_key", ""))
        done = result["deposit"]
        if result["created"]:
            flash(f"Deposited {Money(done['amount'], done['currency'])} into your wallet.", "ok")
        else:
            flash(f"This deposit of {Money(done['amount'], done['currency'])} was made already; nothing more was charged.", "ok")
    except PaymentDeclined:
        flash("The payment provider declined this payment. Nothing was charged; try another amount or payment method.", "error")
    except ProviderError:
        flash("The payment provider failed to answer. Nothing was charged; please try again in a moment.", "error")
    except DomainError as exc:
        flash(exc.description, "error")
    return redirect(url_for("web.wallet"))


@web.get("/flattrs")
@login_required
def flattrs():
    overview = period_overview(me())
    shares = {s["thing_id"]: s["amount"] for s in overview["projection"]["shares"]}
    subscriptions = rpc.call("clicks", "subscriptions", me())
    things = things_by_id([c["thing_id"] for c in overview["period"]["clicks"]] + [s["thing_id"] for s in subscriptions])
    clicks = [dict(c, thing=things.get(c["thing_id"]), share=shares.get(c["thing_id"], 0)) for c in overview["period"]["clicks"]]
    subscriptions = [dict(s, thing=things.get(s["thing_id"])) for s in subscriptions]
    past = list(reversed(rpc.call("settlement", "statement_periods", me())))[:6]
    return render_template("pages/flattrs.html", overview=overview, clicks=clicks, subscriptions=subscriptions, past=past)


@web.post("/flattrs/subscriptions/<int:thing_id>/pause")
@login_required
def toggle_subscription(thing_id):
    try:
        state = rpc.call("clicks", "toggle_subscription", me(), thing_id)
        flash("Subscription paused." if state["paused"] else "Subscription resumed.", "ok")
    except DomainError as exc:
        flash(exc.description, "error")
    return redirect(url_for("web.flattrs") + "#subscriptions")


@web.post("/flattrs/subscriptions/<int:thing_id>/cancel")
@login_required
def cancel_subscription(thing_id):
    try:
        rpc.call("clicks", "unsubscribe", me(), thing_id)
        flash("Subscription cancelled.", "ok")
    except DomainError as exc:
        flash(exc.description, "error")
    return redirect(url_for("web.flattrs") + "#subscriptions")


@web.get("/statements")
@login_required
def statements():
    periods = rpc.call("settlement", "statement_periods", me())
    spending = charts.bar_chart("Spending per period", [(p["period"], p["charged"]) for p in periods])
    earning = charts.bar_chart("Revenue per period", [(p["period"], p["earned"]) for p in periods])
    return render_template("pages/statements.html", periods=list(reversed(periods)), spending=spending, earning=earning)


@web.get("/statements/<period>")
@login_required
def statement(period):
    if not is_period_id(period):
        raise NotFound("no such period")
    found = rpc.call("settlement", "statement", me(), period)
    things = things_by_id([line["thing_id"] for line in found["spent"]] + [line["thing_id"] for line in found["earned"]["things"]])
    spent = [dict(line, thing=things.get(line["thing_id"])) for line in found["spent"]]
    earned = [dict(line, thing=things.get(line["thing_id"])) for line in found["earned"]["things"]]
    return render_template("pages/statement.html", statement=found, spent=spent, earned=earned,
                           spent_total=sum(line["amount"] for line in spent))
