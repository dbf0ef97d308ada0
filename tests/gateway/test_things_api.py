"""The things catalog over HTTP, as Flattr v2 clients use it."""
import uuid

import requests

from tests.factories import bearer, create_thing, personal_token, sign_up, user_with_token
from tests.shared_platform import gateway  # noqa: F401 - one platform for the module

THING_KEYS = {"type", "resource", "link", "id", "url", "title", "description", "language", "category", "tags",
              "hidden", "image", "created_at", "flattrs", "owner", "verified"}


def test_create_then_read_a_thing_in_flattrs_shape(gateway):
    user, headers = user_with_token(gateway)
    url = f"https://blog.example/{uuid.uuid4().hex}"
    created = requests.post(
        f"{gateway}/rest/v2/things",
        json={"url": url, "title": "My first post", "tags": "python,money", "category": "text", "language": "de_DE"},
        headers=headers,
    )
    assert created.status_code == 201
    body = created.json()
    assert body["message"] == "ok" and body["link"].endswith(f"/rest/v2/things/{body['id']}")

    thing = requests.get(f"{gateway}/rest/v2/things/{body['id']}").json()
    assert set(thing) == THING_KEYS
    assert thing["type"] == "thing"
    assert thing["url"] == url
    assert thing["tags"] == ["python", "money"]
    assert thing["hidden"] is False
    assert thing["flattrs"] == 0
    assert thing["owner"]["username"] == user["username"]
    # registered on the owner's word: theirs, unverified until they claim its page or host
    assert thing["verified"] is False and body["verified"] is False
    assert isinstance(thing["created_at"], int)
    # the owner also sees updated_at
    assert "updated_at" in requests.get(f"{gateway}/rest/v2/things/{body['id']}", headers=headers).json()


def test_create_by_form_with_loose_booleans(gateway):
    _, headers = user_with_token(gateway)
    response = requests.post(
        f"{gateway}/rest/v2/things/",
        data={"url": "https://form.example/x", "title": "Posted as a form", "hidden": "1", "tags": "a,b"},
        headers=headers,
    )
    assert response.status_code == 201
    thing = requests.get(f"{gateway}/rest/v2/things/{response.json()['id']}").json()
    assert thing["hidden"] is True and thing["tags"] == ["a", "b"]


def test_existing_url_is_409_with_the_existing_location(gateway):
    _, headers = user_with_token(gateway)
    thing_id = create_thing(gateway, headers, url="https://dup.example/")
    again = requests.post(f"{gateway}/rest/v2/things", json={"url": "https://dup.example/", "title": "Another title"}, headers=headers)
    assert again.status_code == 409
    assert again.headers["Location"].endswith(f"/rest/v2/things/{thing_id}")
    assert again.json()["location"] == again.headers["Location"]


def test_several_things_at_once_skip_missing_ids(gateway):
    _, headers = user_with_token(gateway)
    a = create_thing(gateway, headers)
    b = create_thing(gateway, headers)
    things = requests.get(f"{gateway}/rest/v2/things/{a},{b},999999").json()
    assert [t["id"] for t in things] == [a, b]
    assert requests.get(f"{gateway}/rest/v2/things/999999").status_code == 404


def test_lookup_by_url_and_by_auto_submit_url(gateway):
    _, headers = user_with_token(gateway)
    url = "https://lookup.example/post?id=1#top"
    thing_id = create_thing(gateway, headers, url=url)
    found = requests.get(f"{gateway}/rest/v2/things/lookup", params={"url": url, "full": "1"}, allow_redirects=False)
    assert found.status_code == 302
    assert found.json()["message"] == "found"
    assert found.headers["Location"].endswith(f"/rest/v2/things/{thing_id}")
    followed = requests.get(f"{gateway}/rest/v2/things/lookup", params={"url": url})
    assert followed.json()["id"] == thing_id
    auto = f"{gateway}/submit/auto?user_id=someone&url={requests.utils.quote(url, safe='')}"
    assert requests.get(f"{gateway}/rest/v2/things/lookup", params={"url": auto}, allow_redirects=False).status_code == 302
    missing = requests.get(f"{gateway}/rest/v2/things/lookup", params={"url": "https://lookup.example/post?id=2"})
    assert missing.status_code == 404
    assert missing.json()["message"] == "not_found"
    # the fragment is part of a thing's identity
    assert requests.get(f"{gateway}/rest/v2/things/lookup", params={"url": "https://lookup.example/post?id=1"}).status_code == 404


def test_search_by_text_tags_category_and_user(gateway):
    # words of this test's own, so things other tests make on the same platform do not match
    word = f"py{uuid.uuid4().hex[:8]}"
    alice, alice_headers = user_with_token(gateway)
    _, bob_headers = user_with_token(gateway)
    py = create_thing(gateway, alice_headers, title=f"{word} tricks", tags=f"{word},code", category="software")
    money = create_thing(gateway, alice_headers, title="Money matters", tags=f"money{word}")
    java = create_thing(gateway, bob_headers, title=f"Java and {word}", tags=f"java{word},{word}")
    create_thing(gateway, alice_headers, title=f"Secret {word} notes", tags=word, hidden=True)

    def ids(**query):
        response = requests.get(f"{gateway}/rest/v2/things/search", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["items"] == len(body["things"])
        return {t["id"] for t in body["things"]}

    assert ids(tags=word) == {py, java}
    assert ids(tags=f"{word}&!java{word}") == {py}
    assert ids(tags=f"money{word}|java{word}") == {money, java}
    assert ids(query=word) == {py, java}
    assert ids(category="software", user=alice["username"]) == {py}
    assert ids(user=alice["username"]) == {py, money}
    assert ids(tags=word, sort="flattrs", unknown_param="ignored") == {py, java}
    page = requests.get(f"{gateway}/rest/v2/things/search", params={"tags": word, "count": 1, "page": 2}).json()
    assert page["total_items"] == 2 and page["page"] == 2 and len(page["things"]) == 1
    assert requests.get(f"{gateway}/rest/v2/things/search", params={"sort": "loudest"}).status_code == 400


def test_update_by_patch_by_method_override_and_resending_read_only_fields(gateway):
    _, headers = user_with_token(gateway)
    thing_id = create_thing(gateway, headers, url="https://upd.example/")
    patched = requests.patch(f"{gateway}/rest/v2/things/{thing_id}", json={"title": "New title here", "url": "https://upd.example/", "id": thing_id, "flattrs": 0}, headers=headers)
    assert patched.status_code == 200 and patched.json()["message"] == "ok"
    overridden = requests.post(f"{gateway}/rest/v2/things/{thing_id}", data={"_method": "patch", "description": "via form", "hidden": "false"}, headers=headers)
    assert overridden.status_code == 200
    thing = requests.get(f"{gateway}/rest/v2/things/{thing_id}").json()
    assert (thing["title"], thing["description"], thing["hidden"]) == ("New title here", "via form", False)
    moved = requests.patch(f"{gateway}/rest/v2/things/{thing_id}", json={"url": "https://elsewhere.example/"}, headers=headers)
    assert moved.status_code == 400


def test_only_the_owner_changes_or_deletes(gateway):
    _, owner = user_with_token(gateway)
    _, other = user_with_token(gateway)
    thing_id = create_thing(gateway, owner)
    assert requests.patch(f"{gateway}/rest/v2/things/{thing_id}", json={"title": "Hijacked title"}, headers=other).status_code == 403
    assert requests.delete(f"{gateway}/rest/v2/things/{thing_id}", headers=other).status_code == 403
    assert requests.delete(f"{gateway}/rest/v2/things/{thing_id}", headers=owner).status_code == 204
    assert requests.get(f"{gateway}/rest/v2/things/{thing_id}").status_code == 404
    assert requests.delete(f"{gateway}/rest/v2/things/{thing_id}", headers=owner).status_code == 404


def test_user_things_hide_hidden_things_from_others(gateway):
    user, headers = user_with_token(gateway)
    public = create_thing(gateway, headers)
    hidden = create_thing(gateway, headers, hidden=True)
    listed = requests.get(f"{gateway}/rest/v2/users/{user['username']}/things/").json()
    assert [t["id"] for t in listed] == [public]
    own = requests.get(f"{gateway}/rest/v2/user/things", headers=headers).json()
    assert {t["id"] for t in own} == {public, hidden}
    without_extendedread = bearer(personal_token(gateway, user, "thing"))
    assert [t["id"] for t in requests.get(f"{gateway}/rest/v2/user/things", headers=without_extendedread).json()] == [public]


def test_writes_need_the_thing_scope(gateway):
    user = sign_up(gateway)
    flattr_only = bearer(personal_token(gateway, user, "flattr"))
    response = requests.post(f"{gateway}/rest/v2/things", json={"url": "https://s.example/", "title": "Scoped out"}, headers=flattr_only)
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    anonymous = requests.post(f"{gateway}/rest/v2/things", json={"url": "https://s.example/", "title": "Scoped out"})
    assert anonymous.status_code == 401
    bad_token = requests.post(f"{gateway}/rest/v2/things", json={"url": "https://s.example/"}, headers=bearer("nonsense"))
    assert bad_token.status_code == 401 and bad_token.json()["error"] == "unauthorized"


def test_categories_and_languages(gateway):
    categories = requests.get(f"{gateway}/rest/v2/categories").json()
    assert {"id": "software", "name": "Software"} in categories
    assert {c["id"] for c in categories} == {"text", "images", "video", "audio", "software", "people", "rest"}
    languages = requests.get(f"{gateway}/rest/v2/languages/").json()
    assert {"id": "en_GB", "text": "English"} in languages
