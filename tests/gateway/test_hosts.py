"""Verified hosts over HTTP: ``POST /rest/v2/user/hosts`` checks a host served by the test (its
``/.well-known/flattr`` file or its root page), ``GET`` lists and shows them, ``DELETE`` gives one
up; things on a verified host are its holder's. Answers keep to the OpenAPI document."""
import pytest
import requests
import schemathesis

from services.gateway.views.platform import load_openapi
from tests.factories import create_thing, user_with_token
from tests.openapi_answers import conforms as _conforms
from tests.pages import claim_page


@pytest.fixture
def schema():
    return schemathesis.openapi.from_dict(load_openapi())


def hosts(base, headers, method="GET", path_host=None, body=None):
    url = f"{base}/rest/v2/user/hosts" + (f"/{path_host}" if path_host else "")
    return requests.request(method, url, headers=headers, json=body, timeout=15)


def test_verify_list_show_and_give_up_a_host(gateway, pages, schema):
    alice, alice_headers = user_with_token(gateway)
    _, mallory_headers = user_with_token(gateway)
    host = f"127.0.0.1:{pages.port}"
    pages.serve("/.well-known/flattr", f"{alice['username']}\n".encode(), headers={"Content-Type": "text/plain"})
    squatted = create_thing(gateway, mallory_headers, url=pages.url("/post"))
    mine = create_thing(gateway, alice_headers, url=pages.url("/mine"))

    verified = _conforms(gateway, schema, "POST /rest/v2/user/hosts", 200, body={"host": host}, media_type="application/json", call={"headers": alice_headers})
    assert verified.json() == {
        "type": "host", "host": host, "verified": True, "method": "well-known",
        "verified_at": verified.json()["verified_at"], "check": verified.json()["check"],
    }
    assert verified.json()["check"]["state"] == "passed" and verified.json()["check"]["host"] == host
    for thing_id in (squatted, mine):
        shown = requests.get(f"{gateway}/rest/v2/things/{thing_id}", timeout=10).json()
        assert shown["owner"]["username"] == alice["username"] and shown["verified"] is True

    listed = _conforms(gateway, schema, "GET /rest/v2/user/hosts", 200, call={"headers": alice_headers}).json()
    assert [(h["host"], h["verified"], h["method"]) for h in listed] == [(host, True, "well-known")]
    one = _conforms(gateway, schema, "GET /rest/v2/user/hosts/{host}", 200, path_parameters={"host": host}, call={"headers": alice_headers})
    assert one.json()["verified"] is True

    # new things there are verified at once, and nobody else registers or verifies there
    created = requests.post(f"{gateway}/rest/v2/things", json={"url": pages.url("/new"), "title": "A new post"}, headers=alice_headers, timeout=10)
    assert created.status_code == 201 and created.json()["verified"] is True
    refused = requests.post(f"{gateway}/rest/v2/things", json={"url": pages.url("/x"), "title": "Mallory's try"}, headers=mallory_headers, timeout=10)
    assert refused.status_code == 403 and refused.json()["error_description"] == "this thing's host is verified by another user"
    taken = _conforms(gateway, schema, "POST /rest/v2/user/hosts", 403, body={"host": host}, media_type="application/json", call={"headers": mallory_headers})
    assert taken.json()["error_description"] == "this host is verified by another user"
    _conforms(gateway, schema, "GET /rest/v2/user/hosts/{host}", 404, path_parameters={"host": host}, call={"headers": mallory_headers})

    _conforms(gateway, schema, "DELETE /rest/v2/user/hosts/{host}", 204, path_parameters={"host": host}, call={"headers": alice_headers})
    assert hosts(gateway, alice_headers).json() == []
    _conforms(gateway, schema, "DELETE /rest/v2/user/hosts/{host}", 404, path_parameters={"host": host}, call={"headers": alice_headers})


def test_a_failed_host_check_says_why_and_bad_hosts_are_400(gateway, pages, schema):
    _, headers = user_with_token(gateway)
    host = f"127.0.0.1:{pages.port}"
    pages.serve("/", claim_page(owner="somebody-else"))
    refused = _conforms(gateway, schema, "POST /rest/v2/user/hosts", 403, body={"host": host}, media_type="application/json", call={"headers": headers})
    base = f"http://{host}"
    assert refused.json() == {
        "error": "forbidden",
        "error_description": f"could not fetch: {base}/.well-known/flattr answered HTTP 404; "
        f"no payment link or flattr:owner meta naming you was found at {base}/",
    }
    shown = hosts(gateway, headers, path_host=host).json()
    assert shown["verified"] is False and shown["check"]["state"] == "failed"
    for bad in ("https://blog.example/", "blog.example/path", ""):
        assert hosts(gateway, headers, "POST", body={"host": bad}).status_code == 400, bad
    _conforms(gateway, schema, "POST /rest/v2/user/hosts", 401, body={"host": host}, media_type="application/json")
    _, no_thing_scope = user_with_token(gateway, scope="flattr")
    assert hosts(gateway, no_thing_scope).json()["error"] == "insufficient_scope"


def test_a_host_verified_by_its_root_page(gateway, pages):
    alice, headers = user_with_token(gateway)
    pages.serve("/", claim_page(payment_user=alice["username"]))
    verified = hosts(gateway, headers, "POST", body={"host": f"127.0.0.1:{pages.port}"})
    assert verified.status_code == 200 and verified.json()["method"] == "root page"
