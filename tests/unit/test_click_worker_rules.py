import json
import os
import time

import pytest

from services.clicks import worker as click_worker
from services.clicks.ingest import ClickRequest


def test_both_message_forms_parse_to_requests():
    grouped = json.dumps({"requests": [["a", 1, 2, "api"], ["b", "3", 4, "bogus"]]})
    assert click_worker.parse_requests(grouped, None) == [
        ClickRequest("a", 1, 2, "api"),
        ClickRequest("b", 3, 4, "api"),  # an unknown source is recorded as api
    ]
    single = json.dumps({"user_id": 5, "thing_id": 6, "source": "button"})
    assert click_worker.parse_requests(single, "cid") == [ClickRequest("cid", 5, 6, "button")]


@pytest.mark.parametrize("body", ['{"requests": []}', '{"requests": [["", 1, 2, "api"]]}', '{"user_id": "x", "thing_id": 1}', "not json", "[]"])
def test_unreadable_messages_are_refused(body):
    with pytest.raises((ValueError, KeyError, TypeError, IndexError)):
        click_worker.parse_requests(body, "cid")


def test_health_check_reads_the_heartbeat(tmp_path, monkeypatch):
    beat = tmp_path / "beat"
    monkeypatch.setattr(click_worker, "HEARTBEAT", str(beat))
    assert not click_worker.healthy()
    beat.write_text("1")
    assert click_worker.healthy()
    old = time.time() - 60
    os.utime(beat, (old, old))
    assert not click_worker.healthy()


def test_libpq_dsn_from_a_sqlalchemy_url():
    assert click_worker.libpq_dsn("postgresql+psycopg2://bob:pw@db.example:6543/flattr") == (
        "dbname=flattr user=bob password=pw host=db.example port=6543"
    )
