"""Nobody earns from their own clicks, in any order of click, claim and settlement, and a thing
whose owner is not verified keeps its shares in escrow until a verified ``thing.claimed``.

Each test settles a small period (``tests.settlement_world``: readers funded through the real
deposit flow, 10% fee) and sends the ownership changes as accounts publishes them (through its
outbox and the broker, to the real settlement service). Reader 101 pays 500 a period, 102 pays
300 and 103 pays 200; after the fee, 450, 270 and 180 cents are split over their clicks.
"""
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from services.accounts.models import outbox as accounts_outbox
from services.common.errors import InvalidParameters
from services.common.money import Money
from services.common.outbox import OutboxRelay, TableRecorder, record
from services.settlement import batch, escrow, ledger, money_flows, statements
from services.settlement.models import outbox
from services.settlement.service import SettlementService
from tests.factories import eventually
from tests.settlement_world import PERIOD, SEALED_AT, World, settlement_postings, sources

READERS = {101: (500, 1000), 102: (300, 300), 103: (200, 200)}


def seeded(db, things, clicks, unverified=()):
    world = World(readers=READERS, things=things, clicks=clicks, unverified=set(unverified))
    with Session(db) as session:
        world.seed(session)
    return world


def settle(db, world, thing_owners=None):
    with Session(db) as session:
        batch.begin(session, PERIOD, SEALED_AT, len(world.clicks), "rollover", 1000)
        session.commit()
    found = sources(db)
    if thing_owners is not None:
        found.thing_owners = thing_owners
    return batch.Batch(db, found).run(PERIOD)


@pytest.fixture
def thing_event(start_services, database_url, amqp_uri, db):
    """``thing_event(type, thing_id, owner_id, verified)``: published as accounts publishes it, and
    handled by the settlement service before this returns."""
    start_services(SettlementService)

    def publish(event_type, thing_id, owner_id, verified):
        data = {"thing_id": thing_id, "owner_id": owner_id, "verified": verified, "url": f"https://t{thing_id}.example/",
                "title": f"Thing {thing_id}", "hidden": False}
        with Session(db) as session:
            event_id = record(session, accounts_outbox, event_type, data)["event_id"]
            session.commit()
        relay = OutboxRelay(database_url, amqp_uri, "accounts", "accounts")
        try:
            assert relay.drain() == 1
        finally:
            relay.close()

        def handled():
            with db.connect() as conn:
                return conn.execute(text("SELECT count(*) FROM settlement.processed_events WHERE event_id = :e"), {"e": event_id}).scalar()

        assert eventually(handled, timeout=10)

    return publish


def balances(db, *accounts):
    with Session(db) as session:
        assert ledger.check(session)["ok"]
        return {(kind, owner): ledger.balance(session, kind, owner).cents for kind, owner in accounts}


def statement_of(db, user_id):
    with Session(db) as session:
        return statements.statement(session, user_id, PERIOD)


def lines(found):
    return {line["thing_id"]: (line["amount"], line["destination"]) for line in found["spent"]}


def test_a_thing_that_was_the_readers_own_at_the_click_pays_their_share_back_to_their_wallet(db):
    # 101 owns thing 1 and flattred it anyway (a replica that had not heard of the ownership yet)
    world = seeded(db, things={1: 101, 2: 11}, clicks=[(101, 1), (101, 2), (102, 1)])
    result = settle(db, world)
    assert balances(db, ("wallet", 101), ("revenue", 101), ("revenue", 11), ("wallet", 102), ("fees", None)) == {
        ("wallet", 101): 1000 - 500 + 225,  # 450 over two things; its own thing's 225 came back
        ("revenue", 101): 270,  # 102's share of thing 1
        ("revenue", 11): 225,
        ("wallet", 102): 0,
        ("fees", None): 80,
    }
    with Session(db) as session:
        assert settlement_postings(session) == world.expected()["deltas"]
    totals = result["totals"]
    assert totals["returned"] == 225 and totals["revenue"] == 495 and totals["escrow"] == 0
    assert totals["charged"] == totals["fees"] + totals["revenue"] + totals["escrow"] + totals["charity"] + totals["returned"]
    found = statement_of(db, 101)
    assert lines(found) == {1: (225, "wallet"), 2: (225, "revenue")}
    assert found["own_shares"] == 225 and found["charged"]["amount"] == 500
    assert found["earned"] == {"amount": 270, "things": [{"thing_id": 1, "amount": 270, "clicks": 1, "source": "settlement"}]}


def test_claiming_a_flattred_page_before_the_settlement_earns_nothing_from_ones_own_click(db, thing_event):
    """The attack: deposit 1,000, flattr your own unclaimed page, claim it before the period is
    settled. The share comes back to the wallet; none of it can be paid out."""
    world = seeded(db, things={3: None}, clicks=[(101, 3), (102, 3)])
    thing_event("thing.claimed", 3, 101, True)
    settle(db, world)
    assert balances(db, ("wallet", 101), ("revenue", 101), ("escrow", 3), ("fees", None)) == {
        ("wallet", 101): 1000 - 500 + 450,
        ("revenue", 101): 270,
        ("escrow", 3): 0,
        ("fees", None): 80,
    }
    with Session(db) as session:
        with pytest.raises(InvalidParameters):
            money_flows.request_payout(session, TableRecorder(outbox), 101, Money(271), "all-of-it")
        session.rollback()
    found = statement_of(db, 101)
    assert lines(found) == {3: (450, "wallet")} and found["own_shares"] == 450
    assert found["earned"]["amount"] == 270


def test_claiming_a_flattred_page_after_the_settlement_returns_the_own_share_from_escrow(db, thing_event):
    world = seeded(db, things={3: None}, clicks=[(101, 3), (102, 3)])
    settle(db, world)
    assert balances(db, ("wallet", 101), ("escrow", 3)) == {("wallet", 101): 500, ("escrow", 3): 720}
    thing_event("thing.claimed", 3, 101, True)
    assert balances(db, ("wallet", 101), ("revenue", 101), ("escrow", 3), ("wallet", 102)) == {
        ("wallet", 101): 500 + 450,
        ("revenue", 101): 270,
        ("escrow", 3): 0,
        ("wallet", 102): 0,
    }
    found = statement_of(db, 101)
    assert lines(found) == {3: (450, "wallet")} and found["own_shares"] == 450
    assert found["earned"] == {"amount": 270, "things": [{"thing_id": 3, "amount": 270, "clicks": 1, "source": "escrow"}]}
    with Session(db) as session:
        assert statements.revenue_by_period(session, 101) == [{"period": PERIOD, "amount": 270}]


def test_an_unverified_owner_gets_the_escrow_once_verified_and_never_their_own_share(db, thing_event):
    world = seeded(db, things={4: 101}, unverified={4}, clicks=[(101, 4), (102, 4)])
    settle(db, world)
    # the owner's own share went back at once; 102's waits for the owner to be verified
    assert balances(db, ("wallet", 101), ("revenue", 101), ("escrow", 4)) == {
        ("wallet", 101): 950, ("revenue", 101): 0, ("escrow", 4): 270,
    }
    with Session(db) as session:
        assert settlement_postings(session) == world.expected()["deltas"]
    thing_event("thing.updated", 4, 101, False)
    thing_event("thing.claimed", 4, 101, False)  # a claim that changed nothing proven
    assert balances(db, ("revenue", 101), ("escrow", 4)) == {("revenue", 101): 0, ("escrow", 4): 270}
    thing_event("thing.claimed", 4, 101, True)
    assert balances(db, ("wallet", 101), ("revenue", 101), ("escrow", 4)) == {
        ("wallet", 101): 950, ("revenue", 101): 270, ("escrow", 4): 0,
    }
    found = statement_of(db, 101)
    assert lines(found) == {4: (450, "wallet")}
    assert found["earned"] == {"amount": 270, "things": [{"thing_id": 4, "amount": 270, "clicks": 1, "source": "escrow"}]}


def test_a_verified_claim_takes_an_unverified_owners_thing_and_its_escrow(db, thing_event):
    # 103 registered 101's page as their own (unverified) and flattred it; 101 and 102 flattred it
    world = seeded(db, things={4: 103}, unverified={4}, clicks=[(101, 4), (102, 4), (103, 4)])
    settle(db, world)
    assert balances(db, ("wallet", 103), ("escrow", 4)) == {("wallet", 103): 180, ("escrow", 4): 720}
    thing_event("thing.claimed", 4, 101, True)  # 101 proves the page is theirs
    assert balances(db, ("wallet", 101), ("revenue", 101), ("wallet", 103), ("revenue", 103), ("escrow", 4), ("wallet", 102)) == {
        ("wallet", 101): 500 + 450,  # their own share, back from escrow
        ("revenue", 101): 270,
        ("wallet", 103): 180,  # the squatter's own share, returned by the settlement
        ("revenue", 103): 0,
        ("escrow", 4): 0,
        ("wallet", 102): 0,
    }
    assert lines(statement_of(db, 103)) == {4: (180, "wallet")}
    assert lines(statement_of(db, 102)) == {4: (270, "revenue")}
    assert lines(statement_of(db, 101)) == {4: (450, "wallet")}
    assert statement_of(db, 103)["earned"]["amount"] == 0


def test_an_unverified_owners_escrow_is_refunded_after_the_hold_without_their_own_share(db):
    world = seeded(db, things={4: 103}, unverified={4}, clicks=[(101, 4), (102, 4), (103, 4)])
    settle(db, world)
    recorder = TableRecorder(outbox)
    with Session(db) as session:
        escrow.learn_owners_of_stale(session, lambda ids: {str(i): {"owner_id": 103, "verified": False} for i in ids}, hold_days=0)
        escrow.lock(session)
        refunded = escrow.refund_stale(session, recorder, hold_days=0)
        session.commit()
    assert refunded == [{"period": PERIOD, "thing_id": 4, "amount": 720}]
    assert balances(db, ("wallet", 101), ("wallet", 102), ("wallet", 103), ("revenue", 103), ("escrow", 4)) == {
        ("wallet", 101): 950, ("wallet", 102): 270, ("wallet", 103): 180, ("revenue", 103): 0, ("escrow", 4): 0,
    }
    assert lines(statement_of(db, 103)) == {4: (180, "wallet")}
    assert lines(statement_of(db, 101)) == {4: (450, "refunded")}


def test_owners_the_replica_had_not_heard_of_are_asked_with_their_verification(db):
    world = seeded(db, things={}, clicks=[(101, 5), (102, 5), (102, 6), (101, 6)])
    asked = []

    def thing_owners(ids):
        asked.append(ids)
        return {"5": {"owner_id": 101, "verified": True}, "6": {"owner_id": 13, "verified": False}}

    settle(db, world, thing_owners)
    assert asked == [[5, 6]]
    # 101: 450 over 5 and 6, 225 each; 102: 270, 135 each
    assert balances(db, ("wallet", 101), ("revenue", 101), ("escrow", 6), ("revenue", 13)) == {
        ("wallet", 101): 500 + 225, ("revenue", 101): 135, ("escrow", 6): 360, ("revenue", 13): 0,
    }
