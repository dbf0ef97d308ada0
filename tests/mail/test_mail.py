"""Mail through a real SMTP server (make dev's local one, ``deploy.mailcatcher``): address
confirmation at sign-up, a registered address's owner told instead of the sign-up being refused,
password reset by a mailed link, mail kept while the SMTP server is away, and notices of settled
periods and payouts sent once per fact even when an event comes twice."""
import json
import time

import pytest
import requests
from kombu import Connection, Exchange, Producer
from sqlalchemy import text

from testsupport.mailbox import Mailbox, body, link
from tests.factories import ADMIN, PASSWORD, bearer, deposit, eventually, personal_token, sign_up, unique_username, verified_thing
from tests.web.browsing import csrf_token, web_sign_in


@pytest.fixture
def mailbox(tmp_path):
    box = Mailbox(tmp_path / "mail").start()
    yield box
    box.stop()


@pytest.fixture
def site(start_services, start_click_worker, gateway_factory, mailbox):
    from services.accounts.service import AccountsService
    from services.clicks.service import ClicksService
    from services.settlement.batch_service import SettlementBatchService
    from services.settlement.payouts import PayoutsService
    from services.settlement.service import SettlementService

    start_services(AccountsService, ClicksService, SettlementService, PayoutsService, SettlementBatchService, **mailbox.settings())
    start_click_worker()
    return gateway_factory()


def confirm(site, message) -> requests.Response:
    path = "/email/confirm/" + link(message, "/email/confirm/").rsplit("/email/confirm/", 1)[1]
    browser = requests.Session()
    page = browser.get(f"{site}{path}")
    assert page.status_code == 200
    return browser.post(f"{site}{path}", data={"csrf_token": csrf_token(page)})


def test_sign_up_mails_a_link_that_confirms_the_address(site, mailbox, rpc):
    user = sign_up(site)
    [mail] = mailbox.wait_for(user["email"], "Confirm your email address")
    assert user["username"] in body(mail)
    assert rpc.accounts.get_user(username=user["username"])["email_confirmed"] is False
    assert confirm(site, mail).status_code == 200
    assert rpc.accounts.get_user(username=user["username"])["email_confirmed"] is True
    again = confirm(site, mail)  # a link works once
    assert again.status_code == 400 and "expired or was used" in again.text


def test_a_registered_address_signs_up_like_a_new_one_and_its_owner_is_told(site, mailbox, rpc):
    alice = sign_up(site)
    confirm(site, mailbox.wait_for(alice["email"], "Confirm")[0])
    fresh, taken = unique_username(), unique_username()
    new_address = requests.post(f"{site}/rest/v2/users", json={"username": fresh, "email": f"{fresh}@example.com", "password": PASSWORD})
    reused = requests.post(f"{site}/rest/v2/users", json={"username": taken, "email": alice["email"].upper(), "password": PASSWORD})
    assert reused.status_code == new_address.status_code == 201
    assert sorted(reused.json()) == sorted(new_address.json())
    [notice] = mailbox.wait_for(alice["email"], "Someone signed up with your address")
    assert taken in body(notice) and alice["username"] in body(notice)
    # the owner got a word, never a link that would hand the address to the new account
    assert len(mailbox.to(alice["email"], "Confirm")) == 1
    assert rpc.accounts.get_user(username=taken)["email_confirmed"] is False
    assert rpc.accounts.get_user(username=alice["username"])["email_confirmed"] is True


def test_a_forgotten_password_is_reset_by_a_mailed_link(site, mailbox):
    user = sign_up(site)
    confirm(site, mailbox.wait_for(user["email"], "Confirm")[0])
    browser = requests.Session()
    form = browser.get(f"{site}/password/reset")
    for who in (user["username"], "nobody-like-this", "nobody@example.com"):
        answer = browser.post(f"{site}/password/reset", data={"csrf_token": csrf_token(form), "who": who})
        assert answer.status_code == 200 and 'id="reset-sent"' in answer.text  # the same words for anyone
    [mail] = mailbox.wait_for(user["email"], "Set a new password")
    path = "/password/reset/" + link(mail, "/password/reset/").rsplit("/password/reset/", 1)[1]
    page = browser.get(f"{site}{path}")
    done = browser.post(f"{site}{path}", data={"csrf_token": csrf_token(page), "password": "a brand new password"}, allow_redirects=False)
    assert done.status_code == 302
    web_sign_in(site, user["username"], "a brand new password")
    assert browser.get(f"{site}{path}").status_code == 400  # used once
    time.sleep(0.5)
    assert len(mailbox.to(user["email"], "Set a new password")) == 1


def test_mail_waits_while_the_smtp_server_is_away(site, mailbox, db):
    mailbox.stop()
    user = sign_up(site)
    assert eventually(
        lambda: db.connect().execute(text("SELECT last_error FROM accounts.mail_queue WHERE to_address = :t"), {"t": user["email"]}).scalar(),
        timeout=10,
    )
    mailbox.start()
    mailbox.wait_for(user["email"], "Confirm", timeout=30)
    time.sleep(1)
    assert len(mailbox.to(user["email"])) == 1


def test_notices_of_a_settled_period_and_a_payout_come_once(site, mailbox, amqp_uri, db, pages):
    creator, reader = sign_up(site), sign_up(site)
    for user in (creator, reader):
        confirm(site, mailbox.wait_for(user["email"], "Confirm")[0])
    creator_api = bearer(personal_token(site, creator, "thing payout"))
    reader_api = bearer(personal_token(site, reader, "flattr wallet"))
    thing = verified_thing(site, creator_api, creator, pages)
    requests.put(f"{site}/rest/v2/user/budget", json={"amount": 2000}, headers=reader_api)
    assert deposit(site, reader_api, 3000).status_code == 201
    assert eventually(lambda: requests.post(f"{site}/rest/v2/things/{thing}/flattr", headers=reader_api).status_code == 200)
    period = requests.post(f"{site}/admin/periods/close", headers=ADMIN).json()["period"]

    [paid] = mailbox.wait_for(reader["email"], f"Period {period} is settled", timeout=30)
    assert "20.00 EUR" in body(paid) and f"/statements/{period}" in body(paid)
    [earned] = mailbox.wait_for(creator["email"], f"Period {period} is settled")
    assert "18.00 EUR" in body(earned)

    requests.post(f"{site}/rest/v2/user/payouts", json={"amount": 1800, "idempotency_key": "all"}, headers=creator_api)
    [payout] = mailbox.wait_for(creator["email"], "Payout of 18.00 EUR completed", timeout=20)

    # the broker delivers an event again: nobody is mailed twice
    with db.connect() as conn:
        events = conn.execute(
            text("SELECT body FROM settlement.outbox WHERE event_type IN ('period.settled', 'payout.completed')")
        ).scalars().all()
    assert len(events) == 2
    with Connection(amqp_uri) as connection:
        producer = Producer(connection.default_channel, exchange=Exchange("settlement.events", type="topic", durable=True))
        for event in events:
            producer.publish(json.loads(json.dumps(event)), routing_key=event["type"], delivery_mode=2)
    time.sleep(2)
    assert len(mailbox.to(reader["email"], "is settled")) == 1
    assert len(mailbox.to(creator["email"], "is settled")) == 1
    assert len(mailbox.to(creator["email"], "Payout")) == 1
