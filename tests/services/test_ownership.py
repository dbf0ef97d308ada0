"""Ownership proven, not asserted: the accounts service's claims and verified hosts through its
real RPC entrypoints, with its verification pool, on the real broker and database, against pages
served by the test (``CLAIM_ALLOW_PRIVATE_ADDRESSES=on``: 127.0.0.1, plain http, any port)."""
import time

import pytest
from sqlalchemy import text

from services.common.errors import Forbidden, NotFound, RateLimited
from tests.pages import PageServer, claim_page

PASSWORD = "a long password"


def user(accounts, name):
    return accounts.register_user(name, f"{name}@example.com", PASSWORD)


def outcome(accounts, check, user_id, timeout=15.0):
    """The check once the pool finished it."""
    deadline = time.monotonic() + timeout
    while check["state"] in ("pending", "running"):
        assert time.monotonic() < deadline, f"the check is still {check['state']}"
        time.sleep(0.05)
        check = accounts.get_verification(user_id, check["id"])
    return check


def claim(accounts, user_id, thing_id):
    return outcome(accounts, accounts.request_claim(user_id, thing_id), user_id)


def verify_host(accounts, user_id, host):
    return outcome(accounts, accounts.request_host(user_id, host), user_id)


def host_of(pages):
    return f"127.0.0.1:{pages.port}"


def events(db, event_type, thing_id=None):
    with db.connect() as conn:
        bodies = conn.execute(text("SELECT body FROM accounts.outbox WHERE event_type = :t ORDER BY id"), {"t": event_type}).scalars().all()
    return [b["data"] for b in bodies if thing_id is None or b["data"]["thing_id"] == thing_id]


def owner_of(accounts, thing_id):
    return accounts.thing_owners([thing_id])[str(thing_id)]


# -- things registered on one's word -----------------------------------------------------------------


def test_a_thing_registered_on_an_unverified_host_is_unverified_until_its_page_claim_passes(accounts, pages, db):
    alice = user(accounts, "alice")
    url = pages.serve("/post", claim_page(owner="alice"))
    thing = accounts.create_thing(alice["id"], {"url": url, "title": "Alice's post"})
    assert thing["owner"]["username"] == "alice" and thing["verified"] is False
    assert owner_of(accounts, thing["id"]) == {"owner_id": alice["id"], "verified": False}
    assert events(db, "thing.created") == [
        {"thing_id": thing["id"], "owner_id": alice["id"], "verified": False, "url": url, "title": "Alice's post", "hidden": False}
    ]
    # still listed as hers
    assert [t["id"] for t in accounts.user_things(alice["id"], True)] == [thing["id"]]

    done = claim(accounts, alice["id"], thing["id"])
    assert done["state"] == "passed" and done["reason"] is None and done["kind"] == "page" and done["thing_id"] == thing["id"]
    assert accounts.get_things([thing["id"]])[0]["verified"] is True
    assert owner_of(accounts, thing["id"]) == {"owner_id": alice["id"], "verified": True}
    assert events(db, "thing.claimed") == [
        {"thing_id": thing["id"], "owner_id": alice["id"], "verified": True, "url": url, "title": "Alice's post", "hidden": False}
    ]
    with pytest.raises(Forbidden, match="you already own this thing"):
        accounts.request_claim(alice["id"], thing["id"])
    assert accounts.claim_status(alice["id"], thing["id"])["state"] == "passed"


def test_squatting_earns_nothing_and_the_creators_verified_claim_takes_the_thing(accounts, pages, db):
    alice, mallory = user(accounts, "alice"), user(accounts, "mallory")
    url = pages.serve("/alices-post", claim_page(owner="alice"))
    # mallory watches alice's feed and registers her new post first
    squatted = accounts.create_thing(mallory["id"], {"url": url, "title": "Not mallory's"})
    assert owner_of(accounts, squatted["id"]) == {"owner_id": mallory["id"], "verified": False}
    failed = claim(accounts, mallory["id"], squatted["id"])
    assert failed["state"] == "failed" and failed["reason"] == f"no payment link or flattr:owner meta naming you was found at {url}"
    assert owner_of(accounts, squatted["id"])["verified"] is False

    taken = claim(accounts, alice["id"], squatted["id"])
    assert taken["state"] == "passed"
    assert owner_of(accounts, squatted["id"]) == {"owner_id": alice["id"], "verified": True}
    assert [(e["owner_id"], e["verified"]) for e in events(db, "thing.claimed", squatted["id"])] == [(alice["id"], True)]
    assert accounts.user_things(mallory["id"], True) == []
    with pytest.raises(Forbidden, match="already owned by someone else"):
        accounts.request_claim(mallory["id"], squatted["id"])


def test_marks_a_browser_never_shows_do_not_claim(accounts, pages):
    mallory = user(accounts, "mallory")
    probes = {
        # a comment sanitizer left markup inside an attribute value
        "/attribute": "<html><head><title>t</title></head><body>"
        "<div title='<meta name=\"flattr:owner\" content=\"mallory\">'>a comment</div></body></html>",
        # a mark posted into the body
        "/body": '<html><head><title>t</title></head><body><meta name="flattr:owner" content="mallory"></body></html>',
        "/comment": '<html><head><!-- <meta name="flattr:owner" content="mallory"> --></head></html>',
        "/script": "<html><head><script>var x = '<meta name=\"flattr:owner\" content=\"mallory\">';</script></head></html>",
    }
    for path, html in probes.items():
        thing = accounts.create_unclaimed_thing(pages.serve(path, html.encode()))
        refused = claim(accounts, mallory["id"], thing["id"])
        assert refused["state"] == "failed" and "no payment link or flattr:owner meta naming you" in refused["reason"], path
        assert owner_of(accounts, thing["id"]) == {"owner_id": None, "verified": False}


def test_a_redirect_to_another_host_naming_the_claimer_does_not_claim(accounts, pages):
    mallory = user(accounts, "mallory")
    elsewhere = PageServer()
    try:
        target = elsewhere.serve("/mine", claim_page(owner="mallory")).replace("127.0.0.1", "localhost")
        url = pages.redirect("/popular", target)
        thing = accounts.create_unclaimed_thing(url)
        refused = claim(accounts, mallory["id"], thing["id"])
        assert refused["state"] == "failed" and refused["reason"] == f"could not fetch: {url} redirects to another site"
        assert elsewhere.requests == []
    finally:
        elsewhere.close()


def test_reasons_never_carry_the_remote_text(accounts, pages):
    mallory = user(accounts, "mallory")
    secret = "internal-secret-token"
    url = pages.serve("/json", f'{{"token": "{secret}"}}'.encode(), headers={"Content-Type": f"application/{secret}"})
    thing = accounts.create_unclaimed_thing(url)
    refused = claim(accounts, mallory["id"], thing["id"])
    assert refused["state"] == "failed" and secret not in refused["reason"] and refused["reason"] == f"could not fetch: {url} is not an HTML page"
    gone = accounts.create_unclaimed_thing(pages.url("/missing"))
    assert claim(accounts, mallory["id"], gone["id"])["reason"] == f"could not fetch: {pages.url('/missing')} answered HTTP 404"


def test_concurrent_claims_of_one_thing_verify_one_owner(accounts, pages, db):
    """Four users' checks of one page, queued one after the other while the pool (four workers)
    reads the slow page: one wins; the others are refused, by their check or, if the winner was
    done before they asked, at once."""
    names = ["ann", "ben", "cat", "dan"]
    users = [user(accounts, n) for n in names]
    marks = "".join(f'<meta name="flattr:owner" content="{n}">' for n in names)
    thing = accounts.create_unclaimed_thing(pages.serve("/everyones", f"<html><head>{marks}</head></html>".encode(), delay=1))
    queued = []
    for u in users:
        try:
            queued.append((u, accounts.request_claim(u["id"], thing["id"])))
        except Forbidden as refused:
            queued.append((u, {"state": "failed", "reason": refused.description}))
    outcomes = [(u, outcome(accounts, check, u["id"])) for u, check in queued]
    passed = [u for u, check in outcomes if check["state"] == "passed"]
    assert len(passed) == 1
    assert [c["reason"] for u, c in outcomes if u is not passed[0]] == ["this thing is already owned by someone else"] * 3
    assert owner_of(accounts, thing["id"]) == {"owner_id": passed[0]["id"], "verified": True}
    assert len(events(db, "thing.claimed")) == 1


# -- verified hosts ---------------------------------------------------------------------------------------


def test_a_host_verified_by_its_well_known_file(accounts, pages, db):
    alice, mallory = user(accounts, "alice"), user(accounts, "mallory")
    host = host_of(pages)
    pages.serve("/.well-known/flattr", b"# who may collect here\nalice\n", headers={"Content-Type": "text/plain"})
    mine = accounts.create_thing(alice["id"], {"url": pages.url("/a"), "title": "Alice's first"})
    squatted = accounts.create_thing(mallory["id"], {"url": pages.url("/b"), "title": "Squatted post"})
    unclaimed = accounts.create_unclaimed_thing(pages.url("/c"))
    elsewhere = accounts.create_thing(mallory["id"], {"url": "https://mallory.example/x", "title": "Mallory's own"})

    done = verify_host(accounts, alice["id"], host)
    assert done["state"] == "passed" and done["kind"] == "host" and done["target"] == host
    for thing in (mine, squatted, unclaimed):
        assert owner_of(accounts, thing["id"]) == {"owner_id": alice["id"], "verified": True}
    assert owner_of(accounts, elsewhere["id"]) == {"owner_id": mallory["id"], "verified": False}
    claimed = events(db, "thing.claimed")
    assert sorted(e["thing_id"] for e in claimed) == sorted([mine["id"], squatted["id"], unclaimed["id"]])
    assert all(e["owner_id"] == alice["id"] and e["verified"] is True for e in claimed)
    [listed] = accounts.list_hosts(alice["id"])
    assert listed["host"] == host and listed["method"] == "well-known" and listed["verified_at"]

    # her new things there are verified at once; nobody else registers or claims there
    new = accounts.create_thing(alice["id"], {"url": pages.url("/d"), "title": "Alice's second"})
    assert new["verified"] is True and events(db, "thing.created", new["id"])[0]["verified"] is True
    with pytest.raises(Forbidden, match="host is verified by another user"):
        accounts.create_thing(mallory["id"], {"url": pages.url("/e"), "title": "Mallory again"})
    auto = f"http://flattr.test/submit/auto?user_id=mallory&url={pages.url('/f')}"
    with pytest.raises(Forbidden, match="host is verified by another user"):
        accounts.thing_for_url(auto)
    flattred = accounts.thing_for_url(pages.url("/g"))  # a reader flattrs a page of the host by URL
    assert owner_of(accounts, flattred["id"]) == {"owner_id": alice["id"], "verified": True}
    with pytest.raises(Forbidden, match="this host is verified by another user"):
        accounts.request_host(mallory["id"], host)
    assert accounts.request_host(alice["id"], host)["state"] == "passed"  # again: already hers, nothing fetched

    # giving it up keeps what was verified; the next thing there is no longer verified at once
    accounts.give_up_host(alice["id"], host)
    assert accounts.list_hosts(alice["id"]) == []
    assert owner_of(accounts, new["id"]) == {"owner_id": alice["id"], "verified": True}
    assert accounts.create_thing(alice["id"], {"url": pages.url("/h"), "title": "After giving up"})["verified"] is False
    with pytest.raises(NotFound):
        accounts.give_up_host(alice["id"], host)


def test_a_host_verified_by_its_root_page_and_a_failure_says_why(accounts, pages):
    alice, bob = user(accounts, "alice"), user(accounts, "bob")
    host = host_of(pages)
    failed = verify_host(accounts, alice["id"], host)
    base = f"http://{host}"
    assert failed["state"] == "failed"
    assert failed["reason"] == (
        f"could not fetch: {base}/.well-known/flattr answered HTTP 404; could not fetch: {base}/ answered HTTP 404"
    )
    status = accounts.host_status(alice["id"], host)
    assert status["verified"] is False and status["check"]["state"] == "failed"

    pages.serve("/", claim_page(payment_user="bob"))
    done = verify_host(accounts, bob["id"], host)
    assert done["state"] == "passed"
    assert accounts.host_status(bob["id"], host)["method"] == "root page"


def test_hosts_are_host_names(accounts):
    from services.common.errors import InvalidParameters

    alice = user(accounts, "alice")
    for bad in ("https://blog.example/", "blog.example/path", "", "a b.example", "user@blog.example"):
        with pytest.raises(InvalidParameters):
            accounts.request_host(alice["id"], bad)


# -- the pool and its limits ---------------------------------------------------------------------------------


def test_one_check_at_a_time_per_user_and_asking_again_answers_the_same_check(accounts, pages):
    alice = user(accounts, "alice")
    slow = accounts.create_unclaimed_thing(pages.serve("/slow", claim_page(owner="alice"), delay=2))
    other = accounts.create_unclaimed_thing(pages.serve("/other", claim_page(owner="alice")))
    first = accounts.request_claim(alice["id"], slow["id"])
    assert first["state"] in ("pending", "running")
    assert accounts.request_claim(alice["id"], slow["id"])["id"] == first["id"]
    with pytest.raises(RateLimited, match="one check at a time"):
        accounts.request_claim(alice["id"], other["id"])
    assert outcome(accounts, first, alice["id"])["state"] == "passed"
    assert claim(accounts, alice["id"], other["id"])["state"] == "passed"


def test_checks_per_hour_and_a_failed_verdict_answered_again_without_fetching(start_accounts, pages):
    accounts = start_accounts(CLAIM_CHECKS_PER_HOUR="3", CLAIM_VERDICT_SECONDS="1.5")
    alice = user(accounts, "alice")
    url = pages.serve("/not-yet", claim_page())
    thing = accounts.create_unclaimed_thing(url)
    first = claim(accounts, alice["id"], thing["id"])
    assert first["state"] == "failed"
    fetched = len(pages.requests)
    pages.serve("/not-yet", claim_page(owner="alice"))  # she adds her mark
    again = accounts.request_claim(alice["id"], thing["id"])
    assert again == first and len(pages.requests) == fetched  # a moment later: the same verdict, no fetch
    time.sleep(1.6)
    assert claim(accounts, alice["id"], thing["id"])["state"] == "passed"
    assert len(pages.requests) == fetched + 1

    third = accounts.create_unclaimed_thing(pages.serve("/third", claim_page()))
    claim(accounts, alice["id"], third["id"])
    fourth = accounts.create_unclaimed_thing(pages.serve("/fourth", claim_page(owner="alice")))
    with pytest.raises(RateLimited, match="at most 3 ownership checks an hour"):
        accounts.request_claim(alice["id"], fourth["id"])


def test_slow_pages_hold_no_rpc_worker(start_accounts, pages):
    """With one RPC worker and one check worker, RPCs are answered while the check waits on a
    slow page."""
    accounts = start_accounts(RPC_WORKERS="1", CLAIM_WORKERS="1")
    alice = user(accounts, "alice")
    thing = accounts.create_unclaimed_thing(pages.serve("/slow", claim_page(owner="alice"), delay=3))
    check = accounts.request_claim(alice["id"], thing["id"])
    for _ in range(5):
        assert accounts.get_user(user_id=alice["id"])["username"] == "alice"
    assert accounts.get_verification(alice["id"], check["id"])["state"] == "running"  # all the while
    assert outcome(accounts, check, alice["id"])["state"] == "passed"


def test_a_check_whose_worker_died_is_taken_again(accounts, pages, db):
    alice = user(accounts, "alice")
    thing = accounts.create_unclaimed_thing(pages.serve("/p", claim_page(owner="alice")))
    with db.begin() as conn:  # as a process killed mid-fetch leaves it
        check_id = conn.execute(
            text(
                "INSERT INTO accounts.verifications (user_id, kind, target, thing_id, state, attempts, started_at) "
                "VALUES (:u, 'page', :url, :t, 'running', 1, now() - interval '1 hour') RETURNING id"
            ),
            {"u": alice["id"], "url": thing["url"], "t": thing["id"]},
        ).scalar()
    done = outcome(accounts, accounts.get_verification(alice["id"], check_id), alice["id"])
    assert done["state"] == "passed"
    assert owner_of(accounts, thing["id"]) == {"owner_id": alice["id"], "verified": True}


def test_checks_are_the_users_own(accounts, pages):
    alice, bob = user(accounts, "alice"), user(accounts, "bob")
    thing = accounts.create_unclaimed_thing(pages.serve("/p", claim_page(owner="alice")))
    check = accounts.request_claim(alice["id"], thing["id"])
    with pytest.raises(NotFound):
        accounts.get_verification(bob["id"], check["id"])
    with pytest.raises(NotFound):
        accounts.claim_status(bob["id"], thing["id"])
    with pytest.raises(NotFound):
        accounts.request_claim(alice["id"], 987654)
    outcome(accounts, check, alice["id"])
