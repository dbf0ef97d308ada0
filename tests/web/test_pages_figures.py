"""Every page of the web app answers for a signed-in user with the figures the API gives the
same user: wallet, this period's flattrs and their shares (equal to the settled statement's),
statements, the creator's dashboard and payouts, things, profiles and discovery."""
import re

import requests

from tests.factories import ADMIN, bearer, create_thing, deposit, eventually, personal_token, sign_up, verified_thing
from tests.web.browsing import cents, row_cents, submit, web_sign_in

API = "/rest/v2"


def api(base, path, headers):
    answer = requests.get(f"{base}{API}{path}", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_pages_show_the_figures_the_api_gives(gateway, pages):
    alice = sign_up(gateway)
    alice_api = bearer(personal_token(gateway, alice, "thing flattr extendedread"))
    first = verified_thing(gateway, alice_api, alice, pages, title="Alice's first post", tags="python,money")
    second = verified_thing(gateway, alice_api, alice, pages, title="Alice's second post")
    bob = sign_up(gateway)
    bob_api = bearer(personal_token(gateway, bob, "flattr thing extendedread wallet"))
    assert requests.put(f"{gateway}{API}/user/budget", json={"amount": 500}, headers=bob_api).status_code == 200
    assert deposit(gateway, bob_api, 1234).status_code == 201
    assert eventually(lambda: api(gateway, "/user/wallet", bob_api)["has_means"])
    for thing_id in (first, second):
        assert eventually(lambda: requests.post(f"{gateway}{API}/things/{thing_id}/flattr", headers=bob_api).status_code == 200)
    unclaimed = requests.post(f"{gateway}{API}/flattr", json={"url": "https://nobody.example/article"}, headers=bob_api).json()["thing"]["id"]

    reader = web_sign_in(gateway, bob["username"])
    wallet_api = api(gateway, "/user/wallet", bob_api)
    wallet = reader.get(f"{gateway}/wallet")
    assert cents(wallet, "wallet-balance") == wallet_api["balance"] == 1234
    assert cents(wallet, "wallet-budget") == wallet_api["budget"] == 500
    assert cents(wallet, "wallet-charge") == 500  # min(budget, balance)
    assert wallet_api["period"]["id"] in wallet.text
    assert "3" in re.search(r'id="home-flattrs">(\d+)<', reader.get(f"{gateway}/").text).group(1)

    shares_now = {k: v[0] for k, v in row_cents(reader.get(f"{gateway}/flattrs"), "period-flattrs", "thing").items()}
    assert set(shares_now) == {str(first), str(second), str(unclaimed)}
    assert sum(shares_now.values()) == 450  # 500 less the 10% fee, to the cent

    closed = requests.post(f"{gateway}/admin/periods/close", headers=ADMIN).json()
    period = closed["period"]
    assert eventually(lambda: requests.get(f"{gateway}/admin/settlements/{period}", headers=ADMIN).json()["state"] == "settled", timeout=20)
    statement_api = api(gateway, f"/user/statements/{period}", bob_api)
    statement = reader.get(f"{gateway}/statements/{period}")
    assert cents(statement, "statement-charged") == statement_api["charged"]["amount"] == 500
    assert cents(statement, "statement-fee") == statement_api["charged"]["fee"] == 50
    spent = {k: v[0] for k, v in row_cents(statement, "statement-spent", "thing").items()}
    assert spent == {str(line["thing_id"]): line["amount"] for line in statement_api["spent"]}
    assert spent == shares_now  # what /flattrs showed is what the settlement paid
    assert cents(statement, "statement-total") == sum(spent.values())
    listed = row_cents(reader.get(f"{gateway}/statements"), "statement-periods", "period")
    assert listed[period][0] == 500 and listed[period][1] == 50
    assert cents(reader.get(f"{gateway}/wallet"), "wallet-balance") == api(gateway, "/user/wallet", bob_api)["balance"] == 734

    creator = web_sign_in(gateway, alice["username"])
    revenue_api = api(gateway, "/user/revenue", bearer(personal_token(gateway, alice, "thing payout")))
    dashboard = creator.get(f"{gateway}/dashboard")
    assert cents(dashboard, "revenue-balance") == revenue_api["balance"] == spent[str(first)] + spent[str(second)]
    assert {k: v[0] for k, v in row_cents(dashboard, "revenue-periods", "period").items()} == {p["period"]: p["amount"] for p in revenue_api["periods"]}
    assert re.search(rf'<tr data-thing="{first}">.*?<td class="num">0</td><td class="num">1</td>', dashboard.text, re.S)

    answer = submit(creator, gateway, "/dashboard", "/dashboard/payouts", amount="3.00")
    assert "at least 1000 cents" in answer.text  # settlement's refusal
    assert 'at least <data class="money" value="1000">10.00 EUR</data>' in answer.text  # the minimum, from settlement
    requests.post(f"{gateway}/admin/adjustments", headers=ADMIN, json={
        "username": alice["username"], "account": "revenue", "amount": 1000, "reason": "test", "idempotency_key": "page-test"})
    answer = submit(creator, gateway, "/dashboard", "/dashboard/payouts", amount="12.00")
    assert "Payout of 12.00 EUR requested" in answer.text
    payouts_api = api(gateway, "/user/payouts", bearer(personal_token(gateway, alice, "thing payout")))
    assert eventually(lambda: api(gateway, "/user/payouts", bearer(personal_token(gateway, alice, "thing payout")))[0]["state"] == "completed", timeout=10)
    history = creator.get(f"{gateway}/dashboard")
    assert f'data-payout="{payouts_api[0]["id"]}" data-state="completed"' in history.text

    thing_api = api(gateway, f"/things/{first}", bob_api)
    thing = reader.get(f"{gateway}/thing/{first}")
    assert re.search(r'id="thing-flattrs">(\d+)<', thing.text).group(1) == str(thing_api["flattrs"]) == "1"
    assert f'href="/profile/{bob["username"]}"' in thing.text  # a recent flattrer
    assert "python" in thing.text and "Alice&#39;s first post" in thing.text
    search_api = requests.get(f"{gateway}{API}/things/search", params={"tags": "python"}).json()
    discover = reader.get(f"{gateway}/discover", params={"tag": "python"})
    assert re.search(r'id="discover-total">(\d+) ', discover.text).group(1) == str(search_api["total_items"]) == "1"
    profile = reader.get(f"{gateway}/profile/{alice['username']}")
    assert "Alice&#39;s second post" in profile.text
    assert reader.get(f"{gateway}/settings").text.count(bob["email"]) >= 1
    embed = creator.get(f"{gateway}/embed", params={"thing": first})
    assert f"/button/{first}" in embed.text and "/js/load.js" in embed.text and 'rel="payment"' in embed.text


def test_errors_are_pages_for_browsers_and_json_for_clients(gateway):
    browser = requests.get(f"{gateway}/thing/999999", headers={"Accept": "text/html,*/*;q=0.8"})
    assert browser.status_code == 404 and browser.headers["Content-Type"].startswith("text/html")
    assert "<h1>Not found</h1>" in browser.text
    client = requests.get(f"{gateway}/thing/999999")
    assert client.status_code == 404 and client.json()["error"] == "not_found"
    api_error = requests.get(f"{gateway}{API}/things/999999", headers={"Accept": "text/html"})
    assert api_error.status_code == 404 and api_error.json()["error"] == "not_found"


def test_signed_out_visitors_are_sent_to_sign_in(gateway):
    for path in ("/wallet", "/flattrs", "/statements", "/dashboard", "/settings"):
        answer = requests.get(f"{gateway}{path}", allow_redirects=False)
        assert answer.status_code == 302 and "/login?next=" in answer.headers["Location"], path
    assert requests.get(f"{gateway}/").status_code == 200
    assert requests.get(f"{gateway}/discover").status_code == 200
    assert requests.get(f"{gateway}/embed").status_code == 200


def test_hiding_what_one_flattrs_hides_it_from_pages_and_the_api(gateway):
    creator = sign_up(gateway)
    creator_api = bearer(personal_token(gateway, creator, "thing"))
    thing = create_thing(gateway, creator_api, title="A post to flattr quietly")
    reader = sign_up(gateway)
    reader_api = bearer(personal_token(gateway, reader, "flattr extendedread wallet"))
    requests.put(f"{gateway}{API}/user/budget", json={"amount": 300}, headers=reader_api)
    deposit(gateway, reader_api, 300)
    assert eventually(lambda: requests.post(f"{gateway}{API}/things/{thing}/flattr", headers=reader_api).status_code == 200)
    browser = web_sign_in(gateway, reader["username"])
    assert f'/profile/{reader["username"]}"' in browser.get(f"{gateway}/thing/{thing}").text
    assert len(requests.get(f"{gateway}{API}/users/{reader['username']}/flattrs").json()) == 1

    answer = submit(browser, gateway, "/settings", "/settings/privacy", hide_flattrs="on")
    assert "privacy choices are saved" in answer.text
    assert f'/profile/{reader["username"]}"' not in requests.get(f"{gateway}/thing/{thing}").text
    assert "keeps what they flattr private" in requests.get(f"{gateway}/profile/{reader['username']}").text
    assert requests.get(f"{gateway}{API}/users/{reader['username']}/flattrs").json() == []
    assert requests.get(f"{gateway}{API}/things/{thing}/flattrs").json() == []
    assert requests.get(f"{gateway}{API}/users/{reader['username']}/activities").json()["items"] == []
    assert len(requests.get(f"{gateway}{API}/user/flattrs", headers=reader_api).json()) == 1  # still theirs to see
