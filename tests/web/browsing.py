"""A person at the web pages, through ``requests``: signing in with the forms' CSRF tokens, and
reading the figures the pages carry (``<data class="money" value="CENTS">``)."""
from __future__ import annotations

import re

import requests

from tests.factories import PASSWORD
from tests.web_forms import csrf_token


def web_sign_in(base: str, username: str, password: str = PASSWORD) -> requests.Session:
    browser = requests.Session()
    browser.headers["Accept"] = "text/html,application/xhtml+xml,*/*;q=0.8"
    form = browser.get(f"{base}/login")
    answer = browser.post(f"{base}/login", data={"csrf_token": csrf_token(form), "username": username, "password": password},
                          allow_redirects=False)
    assert answer.status_code == 302, answer.text[:2000]
    return browser


def submit(browser: requests.Session, base: str, page_path: str, action: str, **fields) -> requests.Response:
    """Fill and send a form of ``page_path`` whose action is ``action``, as the page renders it
    (its CSRF token and hidden fields, such as an idempotency key, come from the page)."""
    page = browser.get(f"{base}{page_path}")
    assert page.status_code == 200, page.text[:2000]
    form = re.search(rf'<form[^>]*action="{re.escape(action)}"[^>]*>(.*?)</form>', page.text, re.S)
    assert form, f"no form to {action} on {page_path}"
    data = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(1)))
    data.update(fields)
    return browser.post(f"{base}{action}", data=data)


def cents(page: requests.Response, element_id: str) -> int:
    """The amount shown in the element ``element_id``."""
    match = re.search(rf'id="{re.escape(element_id)}"[^>]*>\s*<data class="money" value="(-?\d+)"', page.text)
    assert match, f"no amount in #{element_id}"
    return int(match.group(1))


def row_cents(page: requests.Response, table_id: str, attribute: str) -> dict[str, list[int]]:
    """For each row of the table ``table_id``: its ``data-<attribute>`` and the amounts in it."""
    table = re.search(rf'<table id="{re.escape(table_id)}".*?</table>', page.text, re.S)
    assert table, f"no table #{table_id}"
    rows = re.findall(rf'<tr data-{attribute}="([^"]+)"[^>]*>(.*?)</tr>', table.group(0), re.S)
    return {key: [int(v) for v in re.findall(r'<data class="money" value="(-?\d+)"', body)] for key, body in rows}
