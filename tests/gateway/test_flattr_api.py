"""Flattring over HTTP: Flattr's exact answers, decided by the click workers from the replicas."""
import uuid

import requests

from tests.factories import ADMIN, create_thing, deposit, eventually, user_with_token


def reader_with_means(base, budget=500):
    user, headers = user_with_token(base)
    requests.put(f"{base}/rest/v2/user/budget", json={"amount": budget}, headers=headers)
    assert deposit(base, headers, budget * 2).status_code == 201
    assert eventually(lambda: requests.get(f"{base}/rest/v2/user/wallet", headers=headers).json()["has_means"])
    return user, headers


def flattr(base, headers, thing_id):
    return requests.post(f"{base}/rest/v2/things/{thing_id}/flattr", headers=headers)


def test_every_flattr_answer(gateway):
    _, creator = user_with_token(gateway)
    thing_id = create_thing(gateway, creator)
    _, reader = reader_with_means(gateway)
    _, broke = user_with_token(gateway)

    first = flattr(gateway, reader, thing_id)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["message"] == "ok"
    assert body["thing"]["id"] == thing_id and body["thing"]["flattrs"] == 1 and body["thing"]["type"] == "thing"

    again = flattr(gateway, reader, thing_id)
    assert (again.status_code, again.json()["error"]) == (403, "flattr_once")
    own = flattr(gateway, creator, thing_id)
    assert (own.status_code, own.json()["error"]) == (403, "flattr_owner")
    no_means = flattr(gateway, broke, thing_id)
    assert (no_means.status_code, no_means.json()["error"]) == (401, "no_means")
    missing = flattr(gateway, reader, 987654)
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")

    thing = requests.get(f"{gateway}/rest/v2/things/{thing_id}", headers=reader).json()
    assert thing["flattrs"] == 1 and thing["flattred"] is True


def test_rules_apply_in_flattrs_order(gateway):
    """An owner without means is told flattr_owner; a reader who flattred and then lost means is
    told flattr_once."""
    _, creator = user_with_token(gateway)
    thing_id = create_thing(gateway, creator)
    assert flattr(gateway, creator, thing_id).json()["error"] == "flattr_owner"
    _, reader = reader_with_means(gateway, budget=500)
    assert flattr(gateway, reader, thing_id).status_code == 200
    requests.put(f"{gateway}/rest/v2/user/budget", json={"amount": 5000}, headers=reader)
    assert eventually(lambda: not requests.get(f"{gateway}/rest/v2/user/wallet", headers=reader).json()["has_means"])
    assert flattr(gateway, reader, thing_id).json()["error"] == "flattr_once"


def test_a_new_thing_is_flattrable_at_once(gateway):
    """Read-your-writes: the replica may not have heard of the thing yet; the worker asks accounts."""
    _, reader = reader_with_means(gateway)
    _, creator = user_with_token(gateway)
    for _ in range(5):
        thing_id = create_thing(gateway, creator)
        assert flattr(gateway, reader, thing_id).status_code == 200


def test_flattr_by_url_registered_unclaimed_and_auto_submit(gateway):
    owner, creator = user_with_token(gateway)
    registered = create_thing(gateway, creator, url="https://registered.example/post")
    _, reader = reader_with_means(gateway)

    by_url = requests.post(f"{gateway}/rest/v2/flattr", data={"url": "https://registered.example/post"}, headers=reader)
    assert by_url.status_code == 200 and by_url.json()["thing"]["id"] == registered

    unclaimed_url = f"https://nobody-here.example/{uuid.uuid4().hex}"
    unclaimed = requests.post(f"{gateway}/rest/v2/flattr", json={"url": unclaimed_url}, headers=reader)
    assert unclaimed.status_code == 200
    thing = requests.get(unclaimed.json()["thing"]["resource"]).json()
    assert thing["owner"] is None and thing["url"] == unclaimed_url and thing["flattrs"] == 1

    target = f"https://blog.example/{uuid.uuid4().hex}"
    auto = f"{gateway}/submit/auto?user_id={owner['username']}&url={requests.utils.quote(target, safe='')}&title=Auto+post"
    made = requests.post(f"{gateway}/rest/v2/flattr", json={"url": auto}, headers=reader)
    assert made.status_code == 200, made.text
    created = requests.get(made.json()["thing"]["resource"]).json()
    assert created["owner"]["username"] == owner["username"] and created["title"] == "Auto post" and created["url"] == target

    assert requests.post(f"{gateway}/rest/v2/flattr", json={"url": "ftp://x.example/"}, headers=reader).status_code == 400
    assert requests.post(f"{gateway}/rest/v2/flattr", headers=reader).status_code == 400


def test_flattr_needs_the_flattr_scope(gateway):
    _, creator = user_with_token(gateway)
    thing_id = create_thing(gateway, creator)
    _, thing_only = user_with_token(gateway, "thing")
    assert flattr(gateway, thing_only, thing_id).json()["error"] == "insufficient_scope"
    assert requests.post(f"{gateway}/rest/v2/things/{thing_id}/flattr").status_code == 401


def test_flattr_lists(gateway):
    owner, creator = user_with_token(gateway)
    thing_id = create_thing(gateway, creator)
    reader, headers = reader_with_means(gateway)
    assert flattr(gateway, headers, thing_id).status_code == 200
    mine = requests.get(f"{gateway}/rest/v2/user/flattrs", headers=headers).json()
    assert [(f["type"], f["thing"]["id"], f["owner"]["username"]) for f in mine] == [("flattr", thing_id, reader["username"])]
    assert requests.get(f"{gateway}/rest/v2/users/{reader['username']}/flattrs").json() == mine
    of_thing = requests.get(f"{gateway}/rest/v2/things/{thing_id}/flattrs").json()
    assert [f["owner"]["username"] for f in of_thing] == [reader["username"]]
    incoming = requests.get(f"{gateway}/rest/v2/users/{owner['username']}/activities", params={"type": "incoming"})
    assert incoming.headers["Content-Type"].startswith("application/stream+json")
    assert incoming.json()["items"][0]["actor"]["displayName"] == reader["username"]


def test_closing_a_period_lets_a_reader_flattr_again(gateway):
    _, creator = user_with_token(gateway)
    thing_id = create_thing(gateway, creator)
    _, reader = reader_with_means(gateway)
    wallet = requests.get(f"{gateway}/rest/v2/user/wallet", headers=reader).json()
    first_period = wallet["period"]["id"]
    assert flattr(gateway, reader, thing_id).status_code == 200
    closed = requests.post(f"{gateway}/admin/periods/close", headers=ADMIN).json()
    assert closed["period"] == first_period and closed["next_period"] == f"{first_period}.2"
    assert requests.get(f"{gateway}/rest/v2/user/wallet", headers=reader).json()["period"]["id"] == closed["next_period"]
    assert flattr(gateway, reader, thing_id).status_code == 200
    assert requests.get(f"{gateway}/rest/v2/things/{thing_id}").json()["flattrs"] == 2
    # the sealed period goes on to be settled by the batch runner
    expected = [(closed["next_period"], "open", 1), (first_period, "settled", 1)]
    assert eventually(
        lambda: [(p["id"], p["state"], p["clicks"]) for p in requests.get(f"{gateway}/admin/periods", headers=ADMIN).json()] == expected,
        timeout=10,
    ), requests.get(f"{gateway}/admin/periods", headers=ADMIN).json()


def test_subscriptions(gateway):
    _, creator = user_with_token(gateway)
    thing_id = create_thing(gateway, creator)
    _, reader = reader_with_means(gateway)
    made = requests.post(f"{gateway}/rest/v2/things/{thing_id}/subscriptions", json={"months": 3}, headers=reader)
    assert made.status_code == 201 and made.json()["months"] == 3
    assert requests.post(f"{gateway}/rest/v2/things/{thing_id}/subscriptions", headers=reader).json()["error"] == "subscribed"
    assert requests.post(f"{gateway}/rest/v2/things/{thing_id}/subscriptions", headers=creator).json()["error"] == "thing_owner"
    assert requests.post(f"{gateway}/rest/v2/things/999999/subscriptions", headers=reader).status_code == 404
    assert requests.post(f"{gateway}/rest/v2/things/{thing_id}/subscriptions", json={"months": 5}, headers=reader).status_code == 400

    requests.post(f"{gateway}/admin/periods/close", headers=ADMIN)
    # the new period starts with the subscription's click
    answer = flattr(gateway, reader, thing_id)
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "flattr_once"
    assert requests.get(f"{gateway}/rest/v2/user/subscriptions", headers=reader).json()[0]["months"] == 2

    paused = requests.put(f"{gateway}/rest/v2/things/{thing_id}/subscriptions", headers=reader).json()
    assert paused["paused"] is True
    requests.post(f"{gateway}/admin/periods/close", headers=ADMIN)
    assert flattr(gateway, reader, thing_id).status_code == 200  # paused: no automatic click this time
    assert requests.delete(f"{gateway}/rest/v2/things/{thing_id}/subscriptions", headers=reader).status_code == 204
    assert requests.get(f"{gateway}/rest/v2/user/subscriptions", headers=reader).json() == []


def test_search_sorts_by_flattrs(gateway):
    _, creator = user_with_token(gateway)
    tag = f"sorted{uuid.uuid4().hex[:6]}"
    popular = create_thing(gateway, creator, tags=tag)
    quiet = create_thing(gateway, creator, tags=tag)
    newest = create_thing(gateway, creator, tags=tag)
    for _ in range(3):
        _, reader = reader_with_means(gateway)
        assert flattr(gateway, reader, popular).status_code == 200
    assert flattr(gateway, reader, quiet).status_code == 200

    def order(sort):
        return [t["id"] for t in requests.get(f"{gateway}/rest/v2/things/search", params={"tags": tag, "sort": sort}).json()["things"]]

    # the counts reach accounts through the clicks outbox within a moment
    assert eventually(lambda: order("flattrs") == [popular, quiet, newest])
    for sort in ("flattrs_month", "flattrs_week", "flattrs_day", "trend"):
        assert order(sort) == [popular, quiet, newest], sort
    assert order("relevance") == [newest, quiet, popular]
