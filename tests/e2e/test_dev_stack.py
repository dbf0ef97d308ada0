"""`make dev` as a user runs it: every process starts, the platform serves, a signal stops it all."""
import pytest
import requests

from testsupport.devstack import DEV_ADMIN_TOKEN, group_alive, stop_group, wait_ready
from tests.factories import PASSWORD, bearer, eventually
from tests.pages import PageServer, Route, claim_page


@pytest.mark.slow
def test_dev_stack_is_ready_within_60_seconds_serves_and_stops_within_3(dev_stack):
    process, base, log = dev_stack
    ready_after = wait_ready(process, base, log)
    print(f"ready after {ready_after:.1f}s")

    # a new user signs up, gets a token, sets a budget and creates a thing, by form as old clients do
    assert requests.post(f"{base}/rest/v2/users", data={"username": "devuser", "email": "dev@example.com", "password": PASSWORD}).status_code == 201
    token = requests.post(f"{base}/rest/v2/user/tokens", auth=("devuser", PASSWORD), data={"scope": "thing wallet payout"}).json()["access_token"]
    token_all = requests.post(f"{base}/rest/v2/user/tokens", auth=("devuser", PASSWORD), data={"scope": "thing flattr"}).json()["access_token"]
    assert requests.put(f"{base}/rest/v2/user/budget", data={"amount": "500"}, headers=bearer(token)).status_code == 200
    # on a page of theirs that names them, so a claim proves it theirs and its shares are revenue
    pages = PageServer()
    own_page = pages.serve("/made-in-dev", claim_page(owner="devuser"))
    created = requests.post(f"{base}/rest/v2/things", data={"url": own_page, "title": "Made in dev"}, headers=bearer(token))
    assert created.status_code == 201 and created.json()["verified"] is False
    proven = requests.post(f"{base}/rest/v2/things/{created.json()['id']}/claim", headers=bearer(token))
    assert proven.status_code == 200 and proven.json()["thing"]["verified"] is True, proven.text
    # the session cookie works across the gateway's worker processes (one secret for all of them)
    assert requests.get(f"{base}/signup").status_code == 200

    # money: a deposit covers the budget; a creator paid through an adjustment is paid out
    deposit = requests.post(f"{base}/rest/v2/user/deposits", data={"amount": "1200", "idempotency_key": "dev-1"}, headers=bearer(token))
    assert deposit.status_code == 201
    wallet = eventually(lambda: (w := requests.get(f"{base}/rest/v2/user/wallet", headers=bearer(token)).json())["has_means"] and w)
    assert wallet["balance"] == 1200 and wallet["budget"] == 500 and wallet["period"]["id"]
    # a flattr of a URL nobody registered: the click workers answer, and the thing exists unclaimed
    flattred = requests.post(f"{base}/rest/v2/flattr", data={"url": "https://someone.example/article"}, headers=bearer(token_all))
    assert flattred.status_code == 200, flattred.text
    assert requests.post(f"{base}/rest/v2/flattr", data={"url": "https://someone.example/article"}, headers=bearer(token_all)).status_code == 403
    admin = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
    credit = {"username": "devuser", "account": "revenue", "amount": 2500, "reason": "demo revenue", "idempotency_key": "dev-rev"}
    assert requests.post(f"{base}/admin/adjustments", json=credit, headers=admin).status_code == 201
    payout = requests.post(f"{base}/rest/v2/user/payouts", json={"amount": 2000, "idempotency_key": "dev-p"}, headers=bearer(token))
    assert payout.status_code == 202
    assert eventually(
        lambda: requests.get(f"{base}/rest/v2/user/payouts/{payout.json()['id']}", headers=bearer(token)).json()["state"] == "completed",
        timeout=10,
    )
    check = requests.get(f"{base}/admin/ledger/check", headers=admin)
    assert check.status_code == 200 and check.json()["totals"]["paid_out"] == 2000

    # a period: a reader funds and flattrs devuser's thing and a page nobody claimed yet; the
    # operator closes the period; the settlement pays devuser and holds the page's share in escrow
    try:
        page = pages.url("/unclaimed-post")
        assert requests.post(f"{base}/rest/v2/users", json={"username": "devreader", "email": "r@example.com", "password": PASSWORD}).status_code == 201
        reader = bearer(requests.post(f"{base}/rest/v2/user/tokens", auth=("devreader", PASSWORD), data={"scope": "flattr wallet"}).json()["access_token"])
        assert requests.put(f"{base}/rest/v2/user/budget", json={"amount": 1001}, headers=reader).status_code == 200
        assert requests.post(f"{base}/rest/v2/user/deposits", json={"amount": 3000, "idempotency_key": "r-1"}, headers=reader).status_code == 201
        assert eventually(lambda: requests.get(f"{base}/rest/v2/user/wallet", headers=reader).json()["has_means"])
        assert requests.post(f"{base}/rest/v2/things/{created.json()['id']}/flattr", headers=reader).status_code == 200
        unclaimed = requests.post(f"{base}/rest/v2/flattr", json={"url": page}, headers=reader).json()["thing"]["id"]
        closed = requests.post(f"{base}/admin/periods/close", headers=admin).json()["period"]
        settled = eventually(
            lambda: (s := requests.get(f"{base}/admin/settlements/{closed}", headers=admin).json())["state"] == "settled" and s, timeout=20
        )
        # devreader's budget and devuser's (who flattred someone.example earlier), 10% fee on each
        assert settled and settled["totals"]["charged"] == 1001 + 500 and settled["totals"]["fees"] == 100 + 50
        statement = requests.get(f"{base}/rest/v2/user/statements/{closed}", headers=reader).json()
        spent = {line["thing_id"]: (line["amount"], line["destination"]) for line in statement["spent"]}
        to_thing, to_page = spent[created.json()["id"]][0], spent[unclaimed][0]
        # 901 cents over two clicks: 450 and 451, by the documented rule
        assert sorted([to_thing, to_page]) == [450, 451] and spent[unclaimed][1] == "escrow"
        assert statement["charged"]["amount"] == 1001 and statement["charged"]["fee"] == 100
        revenue = requests.get(f"{base}/rest/v2/user/revenue", headers=bearer(token)).json()
        assert revenue["balance"] == 500 + to_thing and revenue["periods"] == [{"period": closed, "amount": to_thing}]
        assert settled["totals"]["escrow"] == to_page + 450  # and devuser's 450 for someone.example
        assert requests.get(f"{base}/admin/ledger/check", headers=admin).status_code == 200
        # devuser claims the page: its escrow becomes devuser's revenue
        pages.routes["/unclaimed-post"] = Route(claim_page(owner="devuser"))
        claimed = requests.post(f"{base}/rest/v2/things/{unclaimed}/claim", headers=bearer(token))
        assert claimed.status_code == 200, claimed.text
        assert eventually(
            lambda: requests.get(f"{base}/rest/v2/user/revenue", headers=bearer(token)).json()["balance"] == 500 + 901, timeout=5
        )
        check = requests.get(f"{base}/admin/ledger/check", headers=admin)
        assert check.status_code == 200 and check.json()["totals"]["escrow"] == 450  # someone.example is still unclaimed
    finally:
        pages.close()

    stopped_after = stop_group(process)
    assert not group_alive(process.pid), log.read_text()
    assert stopped_after < 3, f"took {stopped_after:.1f}s to stop"
    assert "killing" not in log.read_text()
    print(f"stopped after {stopped_after:.2f}s")
