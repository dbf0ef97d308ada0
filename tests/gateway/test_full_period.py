"""A whole period over HTTP: readers fund and flattr (owned things and unclaimed URLs), the
operator closes the period, the settlement pays creators to the cent and holds escrow, readers
read their statements, a creator claims a thing and gets its escrow, stale escrow goes back to
the readers, and the ledger check holds at every step."""
import uuid

import pytest
import requests

from services.settlement import rules
from tests.factories import ADMIN, bearer, create_thing, deposit, eventually, ledger_check, personal_token, sign_up, verified_thing
from tests.pages import PageServer, Route, claim_page


@pytest.fixture
def pages():
    server = PageServer()
    yield server
    server.close()


def get(base, path, headers, status=200):
    response = requests.get(f"{base}{path}", headers=headers, timeout=10)
    assert response.status_code == status, response.text
    return response.json()


def member(base, budget=None, funds=0):
    user = sign_up(base)
    headers = bearer(personal_token(base, user))
    if budget is not None:
        assert requests.put(f"{base}/rest/v2/user/budget", json={"amount": budget}, headers=headers, timeout=10).status_code == 200
    if funds:
        assert deposit(base, headers, funds).status_code == 201
    return user, headers


def flattr_url(base, headers, url):
    response = requests.post(f"{base}/rest/v2/flattr", json={"url": url}, headers=headers, timeout=10)
    assert response.status_code == 200 and response.json()["message"] == "ok", response.text
    return response.json()["thing"]["id"]


def flattr(base, headers, thing_id):
    response = requests.post(f"{base}/rest/v2/things/{thing_id}/flattr", headers=headers, timeout=10)
    assert response.status_code == 200, response.text


def wait_for_means(base, headers):
    assert eventually(lambda: get(base, "/rest/v2/user/wallet", headers)["has_means"], timeout=15)


def test_a_period_from_deposits_to_claimed_and_refunded_escrow(gateway, pages, rpc):
    base = gateway
    creator, creator_headers = member(base)
    owned = verified_thing(base, creator_headers, creator, pages)
    claimer, claimer_headers = member(base)
    to_claim = pages.url("/to-claim")
    to_refund = pages.url("/nobody-claims-this")

    reader_a, a_headers = member(base, budget=1000, funds=5000)
    reader_b, b_headers = member(base, budget=701, funds=701)
    idle, idle_headers = member(base, budget=500, funds=800)  # no clicks: rollover, nothing charged
    for headers in (a_headers, b_headers):
        wait_for_means(base, headers)

    flattr(base, a_headers, owned)
    claimed_id = flattr_url(base, a_headers, to_claim)
    refunded_id = flattr_url(base, a_headers, to_refund)
    flattr(base, b_headers, owned)
    assert flattr_url(base, b_headers, to_claim) == claimed_id
    ledger_check(base)

    closed = requests.post(f"{base}/admin/periods/close", headers=ADMIN, timeout=10).json()
    period = closed["period"]
    settled = eventually(lambda: (s := get(base, f"/admin/settlements/{period}", ADMIN))["state"] == "settled" and s, timeout=20)
    assert settled, get(base, f"/admin/settlements/{period}", ADMIN)

    # what the rules say each reader pays and each thing gets
    shares = {}
    for user, budget, things in ((reader_a, 1000, [owned, claimed_id, refunded_id]), (reader_b, 701, [owned, claimed_id])):
        fee = rules.platform_fee(budget, 1000)
        reader_id = rpc.accounts.get_user(username=user["username"])["id"]  # the split's tie-break uses it
        shares[user["username"]] = rules.split_shares(budget - fee, things, reader_id)
    owed = {owned: 0, claimed_id: 0, refunded_id: 0}
    for split in shares.values():
        for thing, cents in split.items():
            owed[thing] += cents
    totals = settled["totals"]
    assert totals["charged"] == 1701 and totals["fees"] == 100 + 70
    assert totals["revenue"] == owed[owned] and totals["escrow"] == owed[claimed_id] + owed[refunded_id]
    assert totals["clicks"] == 5 and totals["readers"] == 2

    # balances to the cent
    assert get(base, "/rest/v2/user/wallet", a_headers)["balance"] == 4000
    assert get(base, "/rest/v2/user/wallet", b_headers)["balance"] == 0
    assert get(base, "/rest/v2/user/wallet", idle_headers)["balance"] == 800
    revenue = get(base, "/rest/v2/user/revenue", creator_headers)
    assert revenue["balance"] == owed[owned] and revenue["periods"] == [{"period": period, "amount": owed[owned]}]
    assert eventually(lambda: not get(base, "/rest/v2/user/wallet", b_headers)["has_means"], timeout=15)
    # the click path hears it too (means.batch_changed, a moment later): B's empty wallet cannot
    # flattr any more. Each try is a new thing, since a try that came too early was a click.
    def flattr_something_new():
        answer = requests.post(f"{base}/rest/v2/things/{create_thing(base, creator_headers)}/flattr", headers=b_headers, timeout=10)
        return answer.status_code == 401 and [answer]

    refused = eventually(flattr_something_new, timeout=15, interval=0.2)
    assert refused and refused[0].json()["error"] == "no_means"

    # statements: where each cent went
    statement = get(base, f"/rest/v2/user/statements/{period}", a_headers)
    assert statement["charged"] == {"amount": 1000, "fee": 100, "to_things": 900, "to_charity": 0, "clicks": 3}
    assert {line["thing_id"]: (line["amount"], line["destination"]) for line in statement["spent"]} == {
        owned: (shares[reader_a["username"]][owned], "revenue"),
        claimed_id: (shares[reader_a["username"]][claimed_id], "escrow"),
        refunded_id: (shares[reader_a["username"]][refunded_id], "escrow"),
    }
    earned = get(base, f"/rest/v2/user/statements/{period}", creator_headers)["earned"]
    assert earned["amount"] == owed[owned] and earned["things"][0]["thing"]["id"] == owned
    assert get(base, f"/rest/v2/user/statements/{period}", idle_headers)["charged"] is None
    get(base, "/rest/v2/user/statements/1999-01", a_headers, status=404)
    periods = {p["id"]: p["state"] for p in get(base, "/admin/periods", ADMIN)}
    assert periods[period] == "settled"
    ledger_check(base)

    # the creator of one unclaimed page claims it: its escrow becomes their revenue
    pages.routes["/to-claim"] = Route(claim_page(owner=claimer["username"]))
    response = requests.post(f"{base}/rest/v2/things/{claimed_id}/claim", headers=claimer_headers, timeout=15)
    assert response.status_code == 200, response.text
    assert eventually(lambda: get(base, "/rest/v2/user/revenue", claimer_headers)["balance"] == owed[claimed_id], timeout=15)
    assert get(base, "/rest/v2/user/revenue", claimer_headers)["periods"] == [{"period": period, "amount": owed[claimed_id]}]
    lines = {line["thing_id"]: line["destination"] for line in get(base, f"/rest/v2/user/statements/{period}", b_headers)["spent"]}
    assert lines == {owned: "revenue", claimed_id: "revenue"}
    ledger_check(base)

    # nobody claims the other: once stale, its escrow goes back to the reader who put it in
    refund = requests.post(f"{base}/admin/escrow/refunds", json={"older_than_days": 0}, headers=ADMIN, timeout=10)
    assert refund.status_code == 200, refund.text
    assert refund.json()["amount"] == owed[refunded_id] == shares[reader_a["username"]][refunded_id]
    assert get(base, "/rest/v2/user/wallet", a_headers)["balance"] == 4000 + owed[refunded_id]
    assert get(base, f"/rest/v2/user/statements/{period}", a_headers)["refunded"] == owed[refunded_id]
    again = requests.post(f"{base}/admin/escrow/refunds", json={"older_than_days": 0}, headers=ADMIN, timeout=10)
    assert again.json()["count"] == 0
    check = ledger_check(base)
    totals = check["totals"]
    assert totals["escrow"] == 0 and totals["fees"] == 170
    assert totals["revenue"] == owed[owned] + owed[claimed_id]


def test_settlement_answers_for_unknown_and_pending_periods(gateway):
    get(gateway, "/admin/settlements/2001-01", ADMIN, status=404)
    get(gateway, "/admin/settlements/not-a-period", ADMIN, status=404)
    assert requests.get(f"{gateway}/admin/settlements/2001-01", timeout=10).status_code == 401
    open_period = get(gateway, "/admin/periods", ADMIN)[0]["id"]
    get(gateway, f"/admin/settlements/{open_period}", ADMIN, status=404)
    bad = requests.post(f"{gateway}/admin/escrow/refunds", json={"older_than_days": -1}, headers=ADMIN, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_parameters"


def test_statements_need_a_personal_token_and_a_period_id(gateway):
    user = sign_up(gateway)
    headers = bearer(personal_token(gateway, user))
    assert requests.get(f"{gateway}/rest/v2/user/statements/2026-01", timeout=10).status_code == 401
    get(gateway, "/rest/v2/user/statements/..%2F", headers, status=404)
    get(gateway, f"/rest/v2/user/statements/{uuid.uuid4().hex[:16]}", headers, status=404)
