"""Claiming things over HTTP: accounts fetches the thing's page from a real local web server,
ownership moves once, ``thing.claimed`` is published and reaches the click path's replica."""
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
from tests.gateway.test_openapi import _conforms
from tests.pages import PageServer, claim_page


@pytest.fixture
def pages():
    server = PageServer()
    yield server
    server.close()


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
    assert thing["owner"]["username"] == user["username"]
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
    assert event["data"] == {"thing_id": thing_id, "owner_id": owner_id, "url": url, "title": shown["title"], "hidden": False}
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
    # the page even names the stranger: an owned thing is not up for claiming
    url = pages.serve("/owned", claim_page(owner=stranger["username"]))
    thing_id = create_thing(gateway, owner_headers, url=url)
    assert error(claim(gateway, stranger_headers, thing_id)) == (403, "forbidden", "this thing is already owned by someone else")
    assert error(claim(gateway, owner_headers, thing_id)) == (403, "forbidden", "you already own this thing")
    assert pages.requests == []  # refused before fetching

    assert error(claim(gateway, owner_headers, 987654))[:2] == (404, "not_found")
    assert claim(gateway, owner_headers, 2**63).status_code == 404  # past bigint
    assert error(claim(gateway, {}, thing_id))[:2] == (401, "unauthorized")
    _, no_thing_scope = user_with_token(gateway, scope="flattr")
    assert error(claim(gateway, no_thing_scope, thing_id))[:2] == (403, "insufficient_scope")
    # a deleted thing is gone
    requests.delete(f"{gateway}/rest/v2/things/{thing_id}", headers=owner_headers, timeout=10)
    assert error(claim(gateway, stranger_headers, thing_id))[:2] == (404, "not_found")


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
    """``claim_stack(**service_settings)``: accounts and clicks with these settings, and a gateway."""
    from services.accounts.service import AccountsService
    from services.clicks.service import ClicksService

    def start(rpc_timeout=10, **overrides):
        start_services(AccountsService, ClicksService, **overrides)
        start_click_worker()
        return gateway_factory(RPC_TIMEOUT=rpc_timeout)

    return start


def test_private_addresses_are_refused_when_not_allowed(claim_stack, rpc, pages):
    base = claim_stack(CLAIM_ALLOW_PRIVATE_ADDRESSES="off")
    user, headers = user_with_token(base)
    for host in ("127.0.0.1", "localhost"):
        url = pages.serve(f"/local-{host}", claim_page(owner=user["username"])).replace("127.0.0.1", host)
        status, code, description = error(claim(base, headers, unclaimed(rpc, url)))
        assert (status, code) == (403, "forbidden")
        assert description.startswith("refusing to fetch a private address"), description
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


def test_accounts_not_answering_in_time_is_503(claim_stack, rpc, pages):
    base = claim_stack(rpc_timeout=1)
    user, headers = user_with_token(base)
    thing_id = unclaimed(rpc, pages.serve("/slowish", claim_page(owner=user["username"]), delay=2))
    answer = claim(base, headers, thing_id)
    assert answer.status_code == 503 and answer.json()["error"] == "service_unavailable" and answer.headers["Retry-After"]
