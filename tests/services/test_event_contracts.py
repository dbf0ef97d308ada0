"""The event contracts (services/common/contracts) and the check every test database goes through:
what a service writes to its outbox must fit its type's schema, and every type must have one."""
import json

import jsonschema
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from services.common import contracts, topology
from services.common.outbox import record, record_many
from services.settlement.models import outbox as settlement_outbox
from testsupport.contracts import outbox_violations


def test_every_schema_is_a_valid_schema_and_every_subscribed_event_has_one():
    for path in contracts.HERE.glob("*.schema.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))
    subscribed = {(event_type, 1) for _, event_type, _, _ in topology.SUBSCRIPTIONS}
    assert subscribed <= contracts.event_types()


def test_an_event_without_a_schema_and_one_that_breaks_its_schema_are_reported(db, database_url):
    with Session(db) as session:
        record(session, settlement_outbox, "thing.exploded", {"thing_id": 1})
        record(session, settlement_outbox, "budget.changed", {"user_id": 7, "budget": "lots", "currency": "EUR"})
        record(session, settlement_outbox, "budget.changed", {"user_id": 7, "budget": 500, "currency": "EUR"})
        session.commit()
    found = outbox_violations(database_url)
    assert len(found) == 2
    assert found[0].startswith("settlement.outbox #") and " thing.exploded: no schema for thing.exploded version 1" in found[0]
    assert " budget.changed: data/budget: 'lots' is not of type 'integer'" in found[1]
    with db.begin() as conn:  # this test's database must pass the same check when it ends
        conn.execute(text("DELETE FROM settlement.outbox WHERE event_type = 'thing.exploded' OR body #>> '{data,budget}' = 'lots'"))
    assert outbox_violations(database_url) == []


def test_record_and_record_many_write_the_same_envelope(db):
    with Session(db) as session:
        one = record(session, settlement_outbox, "token.revoked", {"token_id": 3, "user_id": 4})
        assert record_many(session, "settlement", "token.revoked", "SELECT jsonb_build_object('token_id', 5, 'user_id', 6) AS data") == 1
        many = session.execute(text("SELECT body FROM settlement.outbox WHERE body -> 'data' ->> 'token_id' = '5'")).scalar_one()
        session.rollback()
    for body in (one, many):
        contracts.validate(body)
        assert sorted(body) == ["data", "event_id", "occurred_at", "type", "version"]
        assert body["occurred_at"].endswith("+00:00") and body["version"] == 1


@pytest.mark.parametrize("data", [
    {"thing_id": 1, "owner_id": 2, "url": "https://a.example/", "title": "A page", "hidden": False},
    {"thing_id": 1, "owner_id": 2, "verified": False, "url": "https://a.example/", "title": "A page", "hidden": False},
    {"thing_id": 1, "owner_id": None, "verified": False, "url": "https://a.example/", "title": "A page", "hidden": True},
])
def test_thing_events_carry_verified_or_leave_it_out_for_now(db, data):
    with Session(db) as session:
        body = record(session, settlement_outbox, "thing.claimed", data)
        session.rollback()
    contracts.validate(body)
    with pytest.raises(jsonschema.ValidationError):
        contracts.validate({**body, "data": {**data, "verified": "yes"}})
