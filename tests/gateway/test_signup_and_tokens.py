import requests

from tests.factories import PASSWORD, bearer, personal_token, sign_up, unique_username


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


def test_taken_username_and_email_are_409(gateway):
    user = sign_up(gateway)
    again = requests.post(
        f"{gateway}/rest/v2/users", json={"username": user["username"], "email": "other@example.com", "password": PASSWORD}
    )
    assert again.status_code == 409
    same_email = requests.post(
        f"{gateway}/rest/v2/users",
        json={"username": unique_username(), "email": user["email"].upper(), "password": PASSWORD},
    )
    assert same_email.status_code == 409


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
