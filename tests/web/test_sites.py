"""A creator proves a whole site from the dashboard: instructions, Check now, the outcome in
words, the verified site listed (with its things verified), and giving it up."""
import re

import requests

from tests.factories import bearer, create_thing, personal_token, sign_up
from tests.pages import claim_page
from tests.web.browsing import submit, web_sign_in


def test_a_site_verified_from_the_dashboard_makes_its_things_the_creators(gateway, pages):
    creator = sign_up(gateway)
    api = bearer(personal_token(gateway, creator, "thing"))
    thing = create_thing(gateway, api, url=pages.url("/a-post"))
    browser = web_sign_in(gateway, creator["username"])
    dashboard = browser.get(f"{gateway}/dashboard")
    assert "/.well-known/flattr" in dashboard.text and creator["username"] in dashboard.text
    host = f"127.0.0.1:{pages.port}"

    # someone else tries first (a verdict is kept a while per user and site, so not the creator)
    other = sign_up(gateway)
    pages.serve("/", claim_page(owner=creator["username"]))
    refused = submit(web_sign_in(gateway, other["username"]), gateway, "/dashboard", "/dashboard/hosts", host=host)
    assert "Not yet:" in refused.text and "no payment link or flattr:owner meta naming you" in refused.text
    assert requests.get(f"{gateway}/rest/v2/things/{thing}").json()["verified"] is False

    pages.serve("/.well-known/flattr", f"{creator['username']}\n".encode(), headers={"Content-Type": "text/plain"})
    passed = submit(browser, gateway, "/dashboard", "/dashboard/hosts", host=host)
    assert f"{host} is yours" in passed.text, re.findall(r"class=\"notice[^>]*>([^<]*)", passed.text)
    assert f'data-host="{host}"' in passed.text and "the .well-known/flattr file" in passed.text
    assert requests.get(f"{gateway}/rest/v2/things/{thing}").json()["verified"] is True
    assert 'badge warn">not verified' not in passed.text

    gone = submit(browser, gateway, "/dashboard", f"/dashboard/hosts/{host}/give-up")
    assert f"{host} is no longer verified as yours" in gone.text and f'data-host="{host}"' not in gone.text
    assert requests.get(f"{gateway}/rest/v2/user/hosts", headers=api).json() == []
