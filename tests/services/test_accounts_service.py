"""The accounts service through its real RPC entrypoints, on the real broker and database."""
import pytest
from sqlalchemy import text

from services.common.errors import Conflict, Forbidden, InvalidParameters, NotFound, Unauthorized


def test_registered_user_can_sign_in_and_password_is_hashed(accounts, db):
    user = accounts.register_user("carol", "carol@example.com", "a long password")
    assert accounts.authenticate_password("carol", "a long password")["id"] == user["id"]
    with pytest.raises(Unauthorized):
        accounts.authenticate_password("carol", "wrong password")
    with pytest.raises(Unauthorized):
        accounts.authenticate_password("nobody", "a long password")
    with db.connect() as conn:
        stored = conn.execute(text("SELECT password_hash FROM accounts.users WHERE username='carol'")).scalar()
    assert stored.startswith("$argon2id$")
    assert "a long password" not in stored


def test_tokens_are_stored_hashed_and_revocable(accounts, db):
    user = accounts.register_user("dave", "dave@example.com", "a long password")
    issued = accounts.create_personal_token(user["id"], "thing flattr", "my laptop")
    [caller] = accounts.authenticate_tokens([issued["access_token"]]).values()
    assert caller["user_id"] == user["id"]
    assert caller["scopes"] == ["flattr", "thing"]
    assert caller["kind"] == "personal"
    with db.connect() as conn:
        hashes = conn.execute(text("SELECT token_hash FROM accounts.access_tokens")).scalars().all()
    assert issued["access_token"] not in hashes
    accounts.revoke_token(user["id"], caller["token_id"])
    assert accounts.authenticate_tokens([issued["access_token"]]) == {}
    with pytest.raises(NotFound):
        accounts.revoke_token(user["id"], caller["token_id"])


def test_budget_change_emits_an_event_in_the_outbox(accounts, db):
    user = accounts.register_user("erin", "erin@example.com", "a long password")
    assert accounts.set_budget(user["id"], 500) == {"amount": 500, "currency": "EUR"}
    accounts.set_budget(user["id"], 500)  # unchanged: no second event
    with pytest.raises(InvalidParameters):
        accounts.set_budget(user["id"], 199)
    with db.connect() as conn:
        events = conn.execute(text("SELECT body FROM accounts.outbox WHERE event_type='budget.changed'")).scalars().all()
        budget = conn.execute(text("SELECT budget_cents FROM accounts.users WHERE id=:i"), {"i": user["id"]}).scalar()
    assert budget == 500
    assert len(events) == 1
    assert events[0]["data"] == {"user_id": user["id"], "budget": 500, "currency": "EUR"}
    assert events[0]["version"] == 1 and events[0]["event_id"] and events[0]["occurred_at"]


def test_things_belong_to_their_owner(accounts):
    alice = accounts.register_user("alice", "alice@example.com", "a long password")
    bob = accounts.register_user("bob", "bob@example.com", "a long password")
    thing = accounts.create_thing(alice["id"], {"url": "https://alice.example/post", "title": "Alice's post", "tags": "a,b"})
    assert thing["owner"]["username"] == "alice"
    assert thing["tags"] == ["a", "b"]
    with pytest.raises(Conflict) as conflict:
        accounts.create_thing(bob["id"], {"url": "https://alice.example/post", "title": "Not Bob's post"})
    assert conflict.value.existing_id == thing["id"]
    with pytest.raises(Forbidden):
        accounts.update_thing(bob["id"], thing["id"], {"title": "Stolen title"})
    with pytest.raises(Forbidden):
        accounts.delete_thing(bob["id"], thing["id"])
    updated = accounts.update_thing(alice["id"], thing["id"], {"title": "A better title", "url": thing["url"]})
    assert updated["title"] == "A better title"
    accounts.delete_thing(alice["id"], thing["id"])
    assert accounts.get_things([thing["id"]]) == []
    with pytest.raises(NotFound):
        accounts.lookup_url("https://alice.example/post")
    # a deleted thing's URL can be registered again
    again = accounts.create_thing(bob["id"], {"url": "https://alice.example/post", "title": "Bob's post now"})
    assert again["id"] != thing["id"]


def test_unclaimed_things_have_no_owner_and_are_found_by_url(accounts):
    thing = accounts.create_unclaimed_thing("https://someone.example/article?id=7")
    assert thing["owner"] is None
    assert thing["title"] == "someone.example/article"
    assert accounts.lookup_url("https://someone.example/article?id=7") == thing["id"]
    auto = "https://flattr.test/submit/auto?user_id=someone&url=https%3A%2F%2Fsomeone.example%2Farticle%3Fid%3D7"
    assert accounts.lookup_url(auto) == thing["id"]


def test_failed_call_writes_nothing(accounts, db):
    with pytest.raises(InvalidParameters):
        accounts.register_user("ok-name", "not-an-email", "a long password")
    with pytest.raises(InvalidParameters):
        accounts.create_thing(1, {"url": "https://x.example/", "title": "abc"})
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM accounts.users")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM accounts.things")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM accounts.outbox")).scalar() == 0


def test_many_tokens_are_checked_in_one_call_keyed_by_their_digest(accounts):
    import hashlib

    user = accounts.register_user("tokenful", "tokenful@example.com", "a long password")
    tokens = [accounts.create_personal_token(user["id"], "flattr", f"t{i}")["access_token"] for i in range(3)]
    callers = accounts.authenticate_tokens(tokens + ["not-a-token"])
    assert set(callers) == {hashlib.sha256(t.encode()).hexdigest() for t in tokens}
    assert all(c["user_id"] == user["id"] and c["scopes"] == ["flattr"] for c in callers.values())
    with pytest.raises(InvalidParameters):
        accounts.authenticate_tokens("one token")
