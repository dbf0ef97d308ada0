"""Two-factor sign-in, opt-in per user: set up in /settings with a QR code, then web sign-in asks
for the authenticator's code after the password, and making, listing or revoking tokens over the
API needs it in ``X-Flattr-OTP``; recovery codes work once each; each code works once."""
import re
import time

import pyotp
import requests

from tests.factories import PASSWORD, sign_up
from tests.web.browsing import csrf_token, submit, web_sign_in

API = "/rest/v2"


def codes_from(page: requests.Response) -> list[str]:
    return re.findall(r"<li><code>([^<]+)</code></li>", page.text)


def an_early_moment_of_a_step():
    """Three successive codes (the one before, the current, the next) are accepted only while
    they stay within a step of the clock: start early in a 30-second step."""
    if time.time() % 30 > 15:
        time.sleep(30 - time.time() % 30 + 0.5)
    return time.time()


def sign_in_step_one(base: str, username: str, password: str = PASSWORD) -> tuple[requests.Session, requests.Response]:
    browser = requests.Session()
    browser.headers["Accept"] = "text/html"
    form = browser.get(f"{base}/login")
    answer = browser.post(f"{base}/login", data={"csrf_token": csrf_token(form), "username": username, "password": password},
                          allow_redirects=False)
    return browser, answer


def test_two_factor_set_up_sign_in_tokens_recovery_and_off(gateway):
    user = sign_up(gateway)
    browser = web_sign_in(gateway, user["username"])
    assert 'id="two-factor-state">Off' in browser.get(f"{gateway}/settings").text

    setup = submit(browser, gateway, "/settings", "/settings/two-factor")
    assert setup.status_code == 200 and "<svg" in setup.text
    secret = re.search(r'id="two-factor-secret">([A-Z2-7]+)<', setup.text).group(1)
    totp = pyotp.TOTP(secret)
    started = an_early_moment_of_a_step()

    wrong = browser.post(f"{gateway}/settings/two-factor/confirm", data={"csrf_token": csrf_token(setup), "code": "000000",
                                                                         "secret": secret})
    assert wrong.status_code == 400 and "does not match" in wrong.text and secret in wrong.text
    on = browser.post(f"{gateway}/settings/two-factor/confirm", data={"csrf_token": csrf_token(setup), "code": totp.at(started - 30)})
    recovery = codes_from(on)
    assert on.status_code == 200 and len(recovery) >= 8 and len(set(recovery)) == len(recovery)
    assert 'id="two-factor-state">On' in browser.get(f"{gateway}/settings").text

    # the API: a password alone no longer makes a token
    tokens = f"{gateway}{API}/user/tokens"
    basic = (user["username"], PASSWORD)
    missing = requests.post(tokens, auth=basic, data={"scope": "flattr"})
    assert missing.status_code == 401 and missing.json()["error"] == "two_factor_required"
    assert requests.get(tokens, auth=basic, headers={"X-Flattr-OTP": "123456"}).json()["error"] == "unauthorized"
    made = requests.post(tokens, auth=basic, data={"scope": "flattr"}, headers={"X-Flattr-OTP": recovery[0]})
    assert made.status_code == 201, made.text
    again = requests.post(tokens, auth=basic, data={"scope": "flattr"}, headers={"X-Flattr-OTP": recovery[0]})
    assert again.status_code == 401  # a recovery code works once

    # the web: the password leads to the code page, and only the code signs in
    second, answer = sign_in_step_one(gateway, user["username"])
    assert answer.status_code == 302 and answer.headers["Location"].split("?")[0].endswith("/login/code")
    assert second.get(f"{gateway}/settings", allow_redirects=False).status_code == 302  # not signed in yet
    code_page = second.get(f"{gateway}/login/code")
    assert 'autocomplete="one-time-code"' in code_page.text
    refused = second.post(f"{gateway}/login/code", data={"csrf_token": csrf_token(code_page), "code": "999999"})
    assert refused.status_code == 401 and "not right" in refused.text
    signed_in = second.post(f"{gateway}/login/code", data={"csrf_token": csrf_token(code_page), "code": totp.at(started)},
                            allow_redirects=False)
    assert signed_in.status_code == 302
    assert second.get(f"{gateway}/settings").status_code == 200
    # the same code, again: each time step signs in once
    third, _ = sign_in_step_one(gateway, user["username"])
    page = third.get(f"{gateway}/login/code")
    assert third.post(f"{gateway}/login/code", data={"csrf_token": csrf_token(page), "code": totp.at(started)}).status_code == 401

    # off, with the next code: the password alone signs in again
    off = submit(browser, gateway, "/settings", "/settings/two-factor/off", code=totp.at(started + 30))
    assert "Two-factor sign-in is off" in off.text and 'id="two-factor-state">Off' in off.text
    _, plain = sign_in_step_one(gateway, user["username"])
    assert plain.status_code == 302 and "/login/code" not in plain.headers["Location"]
    assert requests.post(tokens, auth=basic, data={"scope": "flattr"}).status_code == 201
