"""Closing an account settles money first: this period's flattrs are charged at its close, then
the wallet and revenue leave in one final payout; sign-in and tokens end at once, the things
lose their owner, the subscriptions end."""
import requests

from tests.factories import ADMIN, PASSWORD, bearer, deposit, eventually, personal_token, sign_up, verified_thing
from tests.web.browsing import submit, web_sign_in

API = "/rest/v2"


def test_closing_settles_the_period_then_pays_out_wallet_and_revenue(gateway, rpc, db, pages):
    author = sign_up(gateway)
    author_api = bearer(personal_token(gateway, author, "thing flattr payout"))
    post = verified_thing(gateway, author_api, author, pages, title="The author's post")
    leaver = sign_up(gateway)
    leaver_api = bearer(personal_token(gateway, leaver, "thing flattr wallet payout"))
    own = verified_thing(gateway, leaver_api, leaver, pages, title="The leaver's own post")
    requests.put(f"{gateway}{API}/user/budget", json={"amount": 1000}, headers=leaver_api)
    assert deposit(gateway, leaver_api, 2500).status_code == 201
    assert eventually(lambda: requests.post(f"{gateway}{API}/things/{post}/flattr", headers=leaver_api).status_code == 200)
    assert requests.post(f"{gateway}{API}/things/{own}/subscriptions", headers=author_api).status_code == 201
    assert requests.post(f"{gateway}{API}/things/{post}/subscriptions", headers=leaver_api).status_code == 201

    leaver_id = rpc.accounts.get_user(username=leaver["username"])["id"]
    browser = web_sign_in(gateway, leaver["username"])
    refused = submit(browser, gateway, "/settings/close", "/settings/close", username=leaver["username"], password="not it")
    assert "not that one" in refused.text
    closed = submit(browser, gateway, "/settings/close", "/settings/close", username=leaver["username"], password=PASSWORD)
    assert "Your account is closed" in closed.text
    assert requests.get(f"{gateway}{API}/user", headers=leaver_api).status_code == 401  # tokens end at once
    assert requests.post(f"{gateway}{API}/user/tokens", auth=(leaver["username"], PASSWORD), data={"scope": "flattr"}).status_code == 401
    assert requests.get(f"{gateway}{API}/users/{leaver['username']}").status_code == 404
    left = requests.get(f"{gateway}{API}/things/{own}").json()
    assert left["owner"] is None and left["verified"] is False  # listed without an owner, waiting for one to prove it
    assert eventually(lambda: rpc.clicks.subscriptions(leaver_id) == [])
    assert rpc.settlement.pay_out_closed_accounts() == []  # nothing before the period is settled

    period = requests.post(f"{gateway}/admin/periods/close", headers=ADMIN).json()["period"]
    assert eventually(lambda: requests.get(f"{gateway}/admin/settlements/{period}", headers=ADMIN).json()["state"] == "settled", timeout=20)
    author_revenue = requests.get(f"{gateway}{API}/user/revenue", headers=author_api).json()
    assert author_revenue["balance"] == 900  # the leaver's flattr was charged as promised
    [final] = eventually(lambda: rpc.settlement.pay_out_closed_accounts(), timeout=10)
    payouts = rpc.settlement.payouts(leaver_id)
    assert [p["id"] for p in payouts] == [final] and payouts[0]["amount"] == 1500  # 2500 less this period's 1000
    assert eventually(lambda: rpc.settlement.payouts(leaver_id)[0]["state"] == "completed", timeout=10)
    assert rpc.settlement.wallet(leaver_id)["balance"] == 0
    assert rpc.settlement.pay_out_closed_accounts() == []  # once
    assert requests.get(f"{gateway}/admin/ledger/check", headers=ADMIN).json()["ok"]
