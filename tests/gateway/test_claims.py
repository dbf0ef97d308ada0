"""Claiming things over HTTP: accounts checks the thing's page, served by a real local web server,
on its verification pool; ownership moves once, ``thing.claimed`` is published and reaches the
click path's replica. With the attacker's probes: squatting, marks a browser never shows, a
redirect to another site, slow pages against the rest of the platform."""
import json
import time
import uuid

import eventlet
import pytest
import requests
import schemathesis
from kombu import Connection, Exchange, Queue
from sqlalchemy import text

from services.gateway.views.platform import load_openapi
from tests.factories import bearer, create_thing, eventually, personal_token, sign_up, user_with_token
from tests.openapi_answers import conforms as _conforms
from tests.pages import PageServer, claim_page


class ClaimedEvents:
    """A queue bound to ``thing.claimed`` on the accounts exchange, declared before anything is claimed."""

    def __init__(self, amqp_uri):
        self.amqp_uri = amqp_uri
        exchange = Exchange("accounts.events", type="topic", durable=True)
        self.queue = Queue(f"tap-claimed-{uuid.uuid4().hex[:6]}", exchange, routing_key="thing.claimed")
        with Connection(amqp_uri) as conn:
            self.queue(conn.default_channel).declare()
        self.seen = []

    def drain(self, count=1, timeout=5.0):
        deadline = time.monotonic() + timeout
        with Connection(self.amqp_uri) as conn:
            bound = self.queue(conn.default_channel)
            while len(self.seen) < count and time.monotonic() < deadline:
                message = bound.get(no_ack=True)
                if message is None:
                    time.sleep(0.02)
                    continue
                self.seen.append(json.loads(message.body))
        return self.seen


def unclaimed(rpc, url):
    """A thing flattred by URL before its creator joined (as POST /rest/v2/flattr makes it)."""
    return rpc.accounts.create_unclaimed_thing(url)["id"]


def claim(base, headers, thing_id):
    return requests.post(f"{base}/rest/v2/things/{thing_id}/claim", headers=headers, timeout=15)


def error(response):
    return response.status_code, response.json()["error"], response.json()["error_description"]


def test_claim_by_payment_link_moves_ownership_and_reaches_the_click_path(gateway, rpc, pages, amqp_uri, db):
    events = ClaimedEvents(amqp_uri)
    user, headers = user_with_token(gateway)
    url = pages.serve("/post-1", claim_page(payment_user=user["username"]))
    thing_id = unclaimed(rpc, url)

    answer = claim(gateway, headers, thing_id)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["message"] == "ok" and body["description"]
    thing = body["thing"]
    assert thing["type"] == "thing" and thing["id"] == thing_id and thing["url"] == url
    assert thing["owner"]["username"] == user["username"] and thing["verified"] is True
    assert thing["resource"].endswith(f"/rest/v2/things/{thing_id}") and "updated_at" in thing  # the owner's view

    shown = requests.get(f"{gateway}/rest/v2/things/{thing_id}", timeout=10).json()
    assert shown["owner"]["username"] == user["username"]
    mine = requests.get(f"{gateway}/rest/v2/user/things", headers=headers, timeout=10).json()
    assert [t["id"] for t in mine] == [thing_id]

    # the clicks replica heard thing.claimed: the new owner cannot flattr their own thing
    def own_flattr():
        answer = requests.post(f"{gateway}/rest/v2/things/{thing_id}/flattr", headers=headers, timeout=10)
        return answer.status_code == 403 and answer.json()["error"] == "flattr_owner"

    assert eventually(own_flattr), "the click path did not learn the new owner"

    published = events.drain()
    assert len(published) == 1
    event = published[0]
    assert event["type"] == "thing.claimed" and event["version"] == 1 and event["event_id"] and event["occurred_at"]
    owner_id = rpc.accounts.get_user(username=user["username"])["id"]
    assert event["data"] == {"thing_id": thing_id, "owner_id": owner_id, "verified": True, "url": url, "title": shown["title"], "hidden": False}
    with db.connect() as conn:
        outbox = conn.execute(text("SELECT body FROM accounts.outbox WHERE event_type = 'thing.claimed'")).scalars().all()
    assert [e["event_id"] for e in outbox] == [event["event_id"]]

    # claimed once: again is forbidden, and nothing more is published
    again = claim(gateway, headers, thing_id)
    assert error(again) == (403, "forbidden", "you already own this thing")


def test_claim_by_owner_meta_and_the_answer_keeps_to_the_document(gateway, rpc, pages):
    schema = schemathesis.openapi.from_dict(load_openapi())
    user, headers = user_with_token(gateway)
    url = pages.serve("/post-2", claim_page(owner=user["username"]))
    thing_id = unclaimed(rpc, url)
    label = "POST /rest/v2/things/{id}/claim"
    done = _conforms(gateway, schema, label, 200, path_parameters={"id": thing_id}, call={"headers": headers})
    assert done.json()["thing"]["owner"]["username"] == user["username"]
    refused = _conforms(gateway, schema, label, 403, path_parameters={"id": thing_id}, call={"headers": headers})
    assert refused.json()["error"] == "forbidden"
    _conforms(gateway, schema, label, 404, path_parameters={"id": 987654}, call={"headers": headers})
    _conforms(gateway, schema, label, 401, path_parameters={"id": thing_id})
    status = "GET /rest/v2/things/{id}/claim"
    assert _conforms(gateway, schema, status, 200, path_parameters={"id": thing_id}, call={"headers": headers}).json()["state"] == "passed"
    _, stranger = user_with_token(gateway)
    _conforms(gateway, schema, status, 404, path_parameters={"id": thing_id}, call={"headers": stranger})


def test_a_page_naming_someone_else_is_refused(gateway, rpc, pages, db):
    other = sign_up(gateway)
    _, headers = user_with_token(gateway)
    url = pages.serve("/theirs", claim_page(payment_user=other["username"], owner=other["username"]))
    thing_id = unclaimed(rpc, url)
    refused = claim(gateway, headers, thing_id)
    assert error(refused) == (403, "forbidden", f"no payment link or flattr:owner meta naming you was found at {url}")
    assert requests.get(f"{gateway}/rest/v2/things/{thing_id}", timeout=10).json()["owner"] is None
    # the page's real owner can
    assert claim(gateway, bearer(personal_token(gateway, other, "thing")), thing_id).status_code == 200
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM accounts.outbox WHERE event_type = 'thing.claimed'")).scalar() == 1


def test_owned_unknown_and_unauthorised_claims(gateway, pages):
    owner, owner_headers = user_with_token(gateway)
    stranger, stranger_headers = user_with_token(gateway)
    # the page names both: its owner verifies it first, then it is not up for claiming
    url = pages.serve("/owned", claim_page(owner=owner["username"], extra=f'<meta name="flattr:owner" content="{stranger["username"]}">'))
    thing_id = create_thing(gateway, owner_headers, url=url)
    assert requests.get(f"{gateway}/rest/v2/things/{thing_id}", timeout=10).json()["verified"] is False
    assert claim(gateway, owner_headers, thing_id).status_code == 200
    fetched = len(pages.requests)
    assert error(claim(gateway, stranger_headers, thing_id)) == (403, "forbidden", "this thing is already owned by someone else")
    assert error(claim(gateway, owner_headers, thing_id)) == (403, "forbidden", "you already own this thing")
    assert len(pages.requests) == fetched  # refused before fetching

    assert error(claim(gateway, owner_headers, 987654))[:2] == (404, "not_found")
    assert claim(gateway, owner_headers, 2**63).status_code == 404  # past bigint
    assert error(claim(gateway, {}, thing_id))[:2] == (401, "unauthorized")
    _, no_thing_scope = user_with_token(gateway, scope="flattr")
    assert error(claim(gateway, no_thing_scope, thing_id))[:2] == (403, "insufficient_scope")
    # a deleted thing is gone
    requests.delete(f"{gateway}/rest/v2/things/{thing_id}", headers=owner_headers, timeout=10)
    assert error(claim(gateway, stranger_headers, thing_id))[:2] == (404, "not_found")


def test_squatting_earns_nothing_and_the_creators_claim_takes_the_thing(gateway, rpc, pages, db):
    creator, creator_headers = user_with_token(gateway)
    squatter, squatter_headers = user_with_token(gateway)
    url = pages.serve("/creators-post", claim_page(owner=creator["username"]))
    # the squatter watches the creator's feed and registers the post first
    created = requests.post(f"{gateway}/rest/v2/things", json={"url": url, "title": "Someone else's post"}, headers=squatter_headers, timeout=10)
    assert created.status_code == 201 and created.json()["verified"] is False
    thing_id = created.json()["id"]
    shown = requests.get(f"{gateway}/rest/v2/things/{thing_id}", timeout=10).json()
    assert shown["owner"]["username"] == squatter["username"] and shown["verified"] is False
    # an unverified thing still lists under its registering user
    assert [t["id"] for t in requests.get(f"{gateway}/rest/v2/user/things", headers=squatter_headers, timeout=10).json()] == [thing_id]
    with db.connect() as conn:
        created_event = conn.execute(text("SELECT body FROM accounts.outbox WHERE event_type = 'thing.created'")).scalar()
    assert created_event["data"]["verified"] is False  # settlement holds its shares in escrow

    # the squatter cannot verify it; the creator's verified claim takes it over
    refused = error(claim(gateway, squatter_headers, thing_id))
    assert refused[:2] == (403, "forbidden") and "naming you" in refused[2]
    taken = claim(gateway, creator_headers, thing_id)
    assert taken.status_code == 200, taken.text
    assert taken.json()["thing"]["owner"]["username"] == creator["username"] and taken.json()["thing"]["verified"] is True
    assert requests.get(f"{gateway}/rest/v2/user/things", headers=squatter_headers, timeout=10).json() == []
    with db.connect() as conn:
        claimed = conn.execute(text("SELECT body FROM accounts.outbox WHERE event_type = 'thing.claimed'")).scalars().all()
    creator_id = rpc.accounts.get_user(username=creator["username"])["id"]
    assert [(e["data"]["owner_id"], e["data"]["verified"]) for e in claimed] == [(creator_id, True)]


@pytest.mark.parametrize(
    "page",
    [
        # as a comment sanitizer may leave it: the mark is the text of an attribute
        "<html><head><title>A post</title></head><body><div title='<meta name=\"flattr:owner\" content=\"{name}\">'>nice post</div></body></html>",
        # a comment posted into the body
        '<html><head><title>A post</title></head><body><p>nice</p><meta name="flattr:owner" content="{name}"></body></html>',
    ],
    ids=["attribute", "body"],
)
def test_marks_a_browser_never_shows_do_not_claim(gateway, rpc, pages, page):
    attacker, headers = user_with_token(gateway)
    thing_id = unclaimed(rpc, pages.serve("/popular", page.format(name=attacker["username"]).encode()))
    status, code, description = error(claim(gateway, headers, thing_id))
    assert (status, code) == (403, "forbidden") and "naming you" in description
    assert requests.get(f"{gateway}/rest/v2/things/{thing_id}", timeout=10).json()["owner"] is None


def test_a_redirect_to_another_host_naming_the_claimer_does_not_claim(gateway, rpc, pages):
    attacker, headers = user_with_token(gateway)
    theirs = PageServer()
    try:
        target = theirs.serve("/mine", claim_page(owner=attacker["username"])).replace("127.0.0.1", "localhost")
        url = pages.redirect("/popular", target)
        thing_id = unclaimed(rpc, url)
        assert error(claim(gateway, headers, thing_id)) == (403, "forbidden", f"could not fetch: {url} redirects to another site")
        assert theirs.requests == []
    finally:
        theirs.close()


def test_pages_too_large_failing_or_not_html_are_refused(gateway, rpc, pages):
    user, headers = user_with_token(gateway)
    padding = b"<!--" + b"x" * (1048576 + 10) + b"-->"
    cases = [
        (pages.serve("/big", claim_page(owner=user["username"]) + padding), "page larger than 1048576 bytes"),
        (
            pages.serve("/big-unannounced", claim_page(owner=user["username"]) + padding, content_length=False),
            "page larger than 1048576 bytes",
        ),
        (pages.url("/gone"), f"could not fetch: {pages.url('/gone')} answered HTTP 404"),
        (pages.serve("/json", b"{}", headers={"Content-Type": "application/json"}), "is not an HTML page"),
        ("http://no-such-host.invalid/post", "could not fetch: the host no-such-host.invalid does not resolve"),
    ]
    for url, reason in cases:
        thing_id = unclaimed(rpc, url)
        status, code, description = error(claim(gateway, headers, thing_id))
        assert (status, code) == (403, "forbidden"), url
        assert reason in description, (url, description)


def test_claim_through_redirects(gateway, rpc, pages):
    user, headers = user_with_token(gateway)
    pages.serve("/moved-here", claim_page(owner=user["username"]))
    pages.redirect("/old", "/moved-here", status=301)
    assert claim(gateway, headers, unclaimed(rpc, pages.url("/old"))).status_code == 200


def test_concurrent_claims_move_ownership_once(gateway, rpc, pages, db):
    users = [user_with_token(gateway) for _ in range(4)]
    marks = "".join(f'<meta name="flattr:owner" content="{u["username"]}">' for u, _ in users)
    url = pages.serve("/everyones", f"<html><head>{marks}</head></html>".encode())
    thing_id = unclaimed(rpc, url)
    pool = eventlet.GreenPool()
    answers = list(pool.imap(lambda user: claim(gateway, user[1], thing_id), users))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 403, 403, 403], [a.text for a in answers]
    winner = next(a for a in answers if a.status_code == 200).json()["thing"]["owner"]["username"]
    assert requests.get(f"{gateway}/rest/v2/things/{thing_id}", timeout=10).json()["owner"]["username"] == winner
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM accounts.outbox WHERE event_type = 'thing.claimed'")).scalar() == 1


# -- with other settings: services of their own --------------------------------------------------


@pytest.fixture
def claim_stack(start_services, start_click_worker, gateway_factory):
    """``claim_stack(answer_seconds=None, **service_settings)``: accounts and clicks with these
    settings, and a gateway (waiting ``answer_seconds`` for a check's outcome)."""
    from services.accounts.service import AccountsService
    from services.clicks.service import ClicksService

    def start(answer_seconds=None, **overrides):
        start_services(AccountsService, ClicksService, **overrides)
        start_click_worker()
        return gateway_factory(**({"CLAIM_ANSWER_SECONDS": answer_seconds} if answer_seconds else {}))

    return start


def test_private_addresses_https_and_ports_are_enforced_when_not_allowed(claim_stack, rpc, pages):
    base = claim_stack(CLAIM_ALLOW_PRIVATE_ADDRESSES="off")
    user, headers = user_with_token(base)
    for host in ("127.0.0.1", "localhost"):
        # read at https://HOST/ (port 443): the address is refused before anything is sent
        thing_id = unclaimed(rpc, f"http://{host}/local-page")
        assert error(claim(base, headers, thing_id)) == (403, "forbidden", f"refusing to fetch a private address: {host} resolves to one")
    thing_id = unclaimed(rpc, pages.serve("/on-a-port", claim_page(owner=user["username"])))
    assert error(claim(base, headers, thing_id)) == (403, "forbidden", "could not fetch: only ports 80 and 443 are read")
    assert pages.requests == []


def test_slow_pages_time_out(claim_stack, rpc, pages):
    base = claim_stack(CLAIM_FETCH_TIMEOUT="1")
    user, headers = user_with_token(base)
    slow = pages.serve("/slow", claim_page(owner=user["username"]), delay=4)
    # a server that sends its headers a byte at a time: no single read waits long
    trickle = pages.serve("/trickle", claim_page(owner=user["username"]), trickle=0.2)
    for url in (slow, trickle):
        thing_id = unclaimed(rpc, url)
        started = time.monotonic()
        answer = claim(base, headers, thing_id)
        assert time.monotonic() - started < 3, url
        status, code, description = error(answer)
        assert (status, code) == (403, "forbidden")
        assert description.startswith("could not fetch: timed out"), description


def test_a_slow_page_is_answered_pending_and_its_outcome_polled(claim_stack, rpc, pages):
    schema = schemathesis.openapi.from_dict(load_openapi())
    base = claim_stack(answer_seconds="0.3")
    user, headers = user_with_token(base)
    thing_id = unclaimed(rpc, pages.serve("/slowish", claim_page(owner=user["username"]), delay=1.5))
    label = "POST /rest/v2/things/{id}/claim"
    pending = _conforms(base, schema, label, 202, path_parameters={"id": thing_id}, call={"headers": headers})
    body = pending.json()
    assert body["message"] == "pending" and body["check"]["state"] in ("pending", "running") and body["check"]["thing"] == thing_id
    [location] = pending.headers["location"]
    assert location.endswith(f"/rest/v2/things/{thing_id}/claim")

    def done():
        return requests.get(location, headers=headers, timeout=10).json()["state"] not in ("pending", "running")

    assert eventually(done, timeout=10)
    check = requests.get(location, headers=headers, timeout=10).json()
    assert check["state"] == "passed" and check["reason"] is None and check["finished_at"]
    shown = requests.get(f"{base}/rest/v2/things/{thing_id}", timeout=10).json()
    assert shown["owner"]["username"] == user["username"] and shown["verified"] is True
    # asking again while one is running answers that one; another claim meanwhile is refused
    other = unclaimed(rpc, pages.serve("/slower", claim_page(owner=user["username"]), delay=1.5))
    third = unclaimed(rpc, pages.serve("/third", claim_page(owner=user["username"])))
    assert claim(base, headers, other).status_code == 202
    assert claim(base, headers, other).status_code == 202
    busy = claim(base, headers, third)
    assert error(busy)[:2] == (403, "rate_limit_exceeded") and busy.headers["Retry-After"]


def test_slow_claim_pages_do_not_starve_other_requests(claim_stack, rpc, pages):
    """Six claims of pages that take 4 s each, against accounts with two RPC workers: the claims
    wait in accounts' check pool (two at a time), holding neither RPC workers nor the gateway's
    RPC connections, and everything else is answered meanwhile, before any claim is. (When a
    claim's fetch ran inside its RPC, two such claims held both workers for 4 s.)"""
    import eventlet

    base = claim_stack(RPC_WORKERS="2", CLAIM_WORKERS="2")
    claimers = [user_with_token(base) for _ in range(6)]
    things = [unclaimed(rpc, pages.serve(f"/slow-{i}", claim_page(owner=u["username"]), delay=4)) for i, (u, _) in enumerate(claimers)]
    reader, reader_headers = user_with_token(base)
    answered = []

    def claim_and_note(i):
        answer = claim(base, claimers[i][1], things[i])
        answered.append(time.monotonic())
        return answer.status_code

    pool = eventlet.GreenPool()
    claims = [pool.spawn(claim_and_note, i) for i in range(len(claimers))]
    time.sleep(0.5)  # the claims are in
    others = []
    for thing_id in things:
        others.append(requests.get(f"{base}/rest/v2/things/{thing_id}", timeout=10).status_code)
        others.append(requests.get(f"{base}/rest/v2/user", headers=reader_headers, timeout=10).status_code)
        others.append(requests.get(f"{base}/rest/v2/users/{reader['username']}", timeout=10).status_code)
    finished_others = time.monotonic()
    assert others == [200, 200, 200] * len(things)
    assert not answered or finished_others < min(answered), "other requests waited for the claims"
    assert sorted({c.wait() for c in claims}) in ([200], [200, 202])
