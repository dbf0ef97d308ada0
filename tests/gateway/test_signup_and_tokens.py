import requests

from tests.factories import PASSWORD, bearer, personal_token, sign_up, unique_username
from tests.shared_platform import gateway  # noqa: F401 - one platform for the module


def test_sign_up_returns_the_new_user_with_private_fields(gateway):
    name = unique_username()
    response = requests.post(
        f"{gateway}/rest/v2/users", json={"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["type"] == "user"
    assert body["username"] == name
    assert body["email"] == f"{name}@example.com"
    assert body["resource"].endswith(f"/rest/v2/users/{name}")
    assert "password" not in response.text


def test_sign_up_by_form_works_like_json(gateway):
    name = unique_username()
    response = requests.post(
        f"{gateway}/rest/v2/users", data={"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    )
    assert response.status_code == 201
    assert response.json()["username"] == name


def test_a_taken_username_is_409_and_a_registered_email_answers_like_a_new_one(gateway):
    user = sign_up(gateway)
    again = requests.post(
        f"{gateway}/rest/v2/users", json={"username": user["username"], "email": "other@example.com", "password": PASSWORD}
    )
    assert again.status_code == 409
    # usernames are public; which addresses are registered is not (its owner is told by mail)
    fresh, taken = unique_username(), unique_username()
    new_address = requests.post(f"{gateway}/rest/v2/users", json={"username": fresh, "email": f"{fresh}@example.com", "password": PASSWORD})
    same_email = requests.post(f"{gateway}/rest/v2/users", json={"username": taken, "email": user["email"].upper(), "password": PASSWORD})
    assert same_email.status_code == new_address.status_code == 201
    assert sorted(same_email.json()) == sorted(new_address.json())
    assert same_email.headers["Location"].endswith(f"/users/{taken}")


def test_personal_token_is_shown_once_and_authenticates(gateway):
    user = sign_up(gateway)
    token = personal_token(gateway, user, "thing extendedread")
    me = requests.get(f"{gateway}/rest/v2/user", headers=bearer(token))
    assert me.status_code == 200
    assert me.json()["username"] == user["username"]
    assert me.json()["email"] == user["email"]


def test_token_needs_the_right_password(gateway):
    user = sign_up(gateway)
    response = requests.post(f"{gateway}/rest/v2/user/tokens", auth=(user["username"], "wrong password"), data={"scope": "thing"})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_token_request_with_an_empty_body_and_no_content_type(gateway):
    """Old clients post forms with empty bodies: the body is read as an empty form, and a token
    with no scope is refused (it can do nothing, and once it could move money)."""
    user = sign_up(gateway)
    response = requests.post(f"{gateway}/rest/v2/user/tokens", auth=(user["username"], user["password"]))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_parameters" and "scope" in response.json()["error_description"]


def test_a_token_reads_the_callers_profile_but_writes_only_with_its_scopes(gateway):
    user = sign_up(gateway)
    token = personal_token(gateway, user, "email")
    assert requests.get(f"{gateway}/rest/v2/user", headers=bearer(token)).status_code == 200
    write = requests.post(f"{gateway}/rest/v2/things", json={"url": "https://x.example/", "title": "Needs scope"}, headers=bearer(token))
    assert write.status_code == 403


def test_users_list_and_revoke_their_tokens(gateway):
    user = sign_up(gateway)
    basic = (user["username"], user["password"])
    keep = personal_token(gateway, user, "thing")
    drop = personal_token(gateway, user, "flattr")
    tokens = requests.get(f"{gateway}/rest/v2/user/tokens", auth=basic).json()
    assert [t["scope"] for t in tokens] == ["thing", "flattr"]
    assert all("access_token" not in t for t in tokens)
    dropped = next(t for t in tokens if t["scope"] == "flattr")
    assert requests.delete(f"{gateway}/rest/v2/user/tokens/{dropped['id']}", auth=basic).status_code == 204
    assert requests.get(f"{gateway}/rest/v2/user", headers=bearer(drop)).status_code == 401
    assert requests.get(f"{gateway}/rest/v2/user", headers=bearer(keep)).status_code == 200
    assert [t["scope"] for t in requests.get(f"{gateway}/rest/v2/user/tokens", auth=basic).json()] == ["thing"]


def test_nobody_revokes_someone_elses_token(gateway):
    alice, bob = sign_up(gateway), sign_up(gateway)
    alice_token = personal_token(gateway, alice, "thing")
    personal_token(gateway, bob, "thing")
    alice_id = requests.get(f"{gateway}/rest/v2/user/tokens", auth=(alice["username"], alice["password"])).json()[0]["id"]
    assert requests.delete(f"{gateway}/rest/v2/user/tokens/{alice_id}", auth=(bob["username"], bob["password"])).status_code == 404
    assert requests.get(f"{gateway}/rest/v2/user", headers=bearer(alice_token)).status_code == 200


def test_user_profiles_hide_private_fields_from_others(gateway):
    user = sign_up(gateway, firstname="Ada", city="London")
    public = requests.get(f"{gateway}/rest/v2/users/{user['username']}").json()
    assert public["firstname"] == "Ada" and public["city"] == "London"
    assert "email" not in public and "registered_at" not in public
