"""The OpenAPI document (services/gateway/openapi.yaml) matches what the gateway serves.

- The document is valid OpenAPI 3.0 and is what ``/openapi.json`` serves.
- Every (method, path) the Flask app serves under ``/rest/v2`` (and the operational endpoints) is
  documented, and nothing else is: the document cannot drift from the routes.
- Path parameters, scopes and auth in the document agree with the view code.
- A schema-driven run against a gateway backed by the real services (schemathesis' coverage cases
  plus derandomized hypothesis fuzzing of every operation) finds no server error, and every answer
  keeps to its documented status, content type, headers and schema; hand-made requests do the same
  for answers fuzzing cannot reach (OAuth tokens, missing scopes, found lookups, rate limits).
- ODD_INPUT lists requests that once crashed the gateway; each must be refused with a 4xx.
- KNOWN_SERVER_ERRORS lists the server errors the fuzzer finds in code not yet fixed; each has a
  strict xfail test that reproduces it, so the fix turns that test red until its entry is removed.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.overrides import Override

from services.gateway.app import create_app
from services.gateway.views.platform import load_openapi
from tests.factories import PASSWORD, SECRET_KEY, bearer, create_thing, deposit, eventually, personal_token, user_with_token
from tests.openapi_answers import POSITIVE_CHECKS
from tests.openapi_answers import conforms as _conforms

HTTP_METHODS = {"get", "put", "post", "delete", "patch"}
# Served outside /rest/v2 and documented too; the HTML pages (/, /signup, /login, /apps, /thing/..,
# /profile/.., /oauth/authorize) are for browsers and are not part of the document.
DOCUMENTED_OUTSIDE_API = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("POST", "/oauth/token"),
    ("GET", "/rest/v2"),
}


@pytest.fixture(scope="module")
def document() -> dict:
    return load_openapi()


@pytest.fixture(scope="module")
def app():
    return create_app({"SECRET_KEY": SECRET_KEY, "FLATTR_PUBLIC_URL": "http://flattr.test", "FLATTR_RATE_LIMITS": "off"}, rpc=object())


def _template(path: str) -> str:
    """``/things/<int:thing_id>`` and ``/things/{id}`` both become ``/things/{}``."""
    path = re.sub(r"<(?:[^<>:]+:)?[^<>]+>", "{}", path)
    return re.sub(r"\{[^{}]+\}", "{}", path)


def _served(app) -> dict[tuple[str, str], object]:
    """(METHOD, path template) -> the rule, for /rest/v2 and the documented operational routes."""
    served = {}
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            key = (method, _template(rule.rule))
            if rule.rule.startswith("/rest/v2/") or key in DOCUMENTED_OUTSIDE_API:
                served[key] = rule
    return served


def _documented(document: dict) -> dict[tuple[str, str], dict]:
    return {
        (method.upper(), _template(path)): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


# -- the document itself --------------------------------------------------------------------------


def test_document_is_valid_openapi_3_0(document):
    from openapi_spec_validator import validate

    assert document["openapi"] == "3.0.3"
    validate(document)
    # schemathesis loads it and checks it against its own copy of the OpenAPI 3.0 schema
    schemathesis.openapi.from_dict(load_openapi()).validate()


def test_openapi_json_serves_the_document(app, document):
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.is_json
    assert response.get_json() == document


# -- the document against the routes --------------------------------------------------------------


def test_every_served_route_is_documented_and_nothing_else(app, document):
    served = set(_served(app))
    documented = set(_documented(document))
    assert {key for key in served if key[1].startswith("/rest/v2/")}, "no /rest/v2 routes found: the app changed shape"
    assert served - documented == set(), "served but not in openapi.yaml"
    assert documented - served == set(), "in openapi.yaml but not served"


def test_path_parameters_match_the_route_converters(app, document):
    served = _served(app)
    for key, operation in _documented(document).items():
        rule = served[key]
        params = {p["name"]: p for p in operation.get("parameters", []) if "$ref" not in p}
        for ref in (p["$ref"] for p in operation.get("parameters", []) if "$ref" in p):
            param = document["components"]["parameters"][ref.rsplit("/", 1)[1]]
            params[param["name"]] = param
        path_params = [p for p in params.values() if p["in"] == "path"]
        assert len(path_params) == len(rule.arguments), key
        for converter, _, _ in _rule_parts(rule.rule):
            expected = "integer" if converter == "int" else "string"
            assert expected in {p["schema"].get("type") for p in path_params}, (key, converter)


def _rule_parts(rule: str):
    for match in re.finditer(r"<(?:([^<>:]+):)?([^<>]+)>", rule):
        yield match.group(1) or "default", match.group(2), match.group(0)


def test_auth_and_scopes_match_the_views(app, document):
    served = _served(app)
    for key, operation in _documented(document).items():
        view = app.view_functions[served[key].endpoint]
        scopes = getattr(view, "required_scopes", None)
        security = operation.get("security", document.get("security"))
        assert security is not None, f"{key} names no security"
        if scopes is not None:  # the view is wrapped in @require(...): a bearer token is needed
            assert security == [{"bearerAuth": []}], key
            assert sorted(operation.get("x-required-scopes", [])) == sorted(scopes), key
            assert sorted(operation.get("x-required-any-scope", [])) == sorted(view.any_of_scopes), key
        elif getattr(view, "needs_password", False):
            assert security == [{"basicAuth": []}], key  # HTTP Basic username:password, checked by the view
        else:
            assert {} in security, f"{key}: the view needs no bearer token, so security must allow none"
            assert "x-required-scopes" not in operation, key


# -- the running gateway against the document ------------------------------------------------------

# Data that breaks the document may miss a route altogether (a negative id is no <int:...>, a
# generated "/" splits a path), so the answer's status need not be a documented one; it must still
# not be a server error, and a documented answer must keep to its schema.
NEGATIVE_CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]
# per operation and generation mode, on top of schemathesis' coverage cases: a few in `make test`,
# more with `make test-openapi` (OPENAPI_FUZZ_EXAMPLES=25)
FUZZ_EXAMPLES = int(os.environ.get("OPENAPI_FUZZ_EXAMPLES", "6"))
# fewer for operations whose every request is slow: each token request verifies a password with argon2
FUZZ_EXAMPLES_OF = {"POST /rest/v2/user/tokens": 5, "GET /rest/v2/user/tokens": 5, "DELETE /rest/v2/user/tokens/{id}": 5}


INT64_MAX = 2**63 - 1


KNOWN_SERVER_ERRORS: list = []


def _documented_answers_over_500(operation) -> set[int]:
    """5xx statuses the document names as answers; never 500 (a crash) nor 503 (a service down)."""
    statuses = {int(code) for code in operation.definition.raw["responses"] if code.isdigit()}
    return {code for code in statuses if code >= 500} - {500, 503}


class Prober:
    """Sends cases to the gateway with the right credentials and collects every broken check."""

    def __init__(self, base_url: str, bearer: dict, basic: tuple[str, str]):
        self.base_url, self.bearer, self.basic = base_url, bearer, basic
        self.session = requests.Session()
        self.failures: list[str] = []
        self.known: list[str] = []
        self.statuses: dict[str, Counter] = {}

    def send(self, case, label: str, send_token: bool = True) -> None:
        """One request; raises schemathesis' FailureGroup when a check fails."""
        security = case.operation.definition.raw.get("security")
        kwargs: dict = {"timeout": 10}
        if security == [{"basicAuth": []}]:
            kwargs["auth"] = self.basic
        elif security == [{"bearerAuth": []}] or (send_token and case.operation.path.startswith("/rest/v2/")):
            kwargs["headers"] = dict(self.bearer)
        response = case.call(base_url=self.base_url, session=self.session, **kwargs)
        # schemathesis also sends other methods to the path (405, or 200 for OPTIONS): counted apart
        other_method = str(case.method).upper() != case.operation.method.upper()
        self.statuses.setdefault(f"{label} (other methods)" if other_method else label, Counter())[response.status_code] += 1
        for known in KNOWN_SERVER_ERRORS:
            reason = known(case, response)
            if reason:
                self.known.append(f"{case.operation.label} {case.path_parameters}: {response.status_code}, {reason}")
                return
        mode = case.meta.generation.mode if case.meta is not None else GenerationMode.POSITIVE
        checks = POSITIVE_CHECKS if mode == GenerationMode.POSITIVE else NEGATIVE_CHECKS
        if response.status_code in _documented_answers_over_500(case.operation):
            # e.g. 502 provider_error of a deposit: the payment provider's answer, not a crash
            checks = [check for check in checks if check is not not_a_server_error]
        case.validate_response(response, checks=checks, headers=kwargs.get("headers"))

    def _failed(self, label: str, exc: BaseException) -> None:
        notes = "\n".join(getattr(exc, "__notes__", []))
        self.failures.append(f"--- {label}\n{type(exc).__name__}: {exc}\n{notes}".rstrip())

    def coverage(self, operation, **path_parameters) -> None:
        """schemathesis' coverage phase: boundary values, wrong types, missing fields, odd methods.

        CoverageGenerator is what schemathesis' pytest plugin and CLI run that phase with.
        """
        label = f"{operation.label} [coverage{', ' + repr(path_parameters) if path_parameters else ''}]"
        generator = CoverageGenerator(
            operation=operation,
            generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
            generation_config=operation.schema.config.generation_for(operation=operation, phase="coverage"),
            auth_storage=None,
            override=Override(path_parameters=path_parameters),
            feedback=FeedbackSources(),
        )
        for case in generator:
            try:
                self.send(case, label)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - keep going: report every broken case
                description = case.meta.phase.data.description if case.meta is not None else ""
                self._failed(f"{label} {description}", exc)

    def fuzz(self, operation, mode: GenerationMode, examples: int = FUZZ_EXAMPLES, **path_parameters) -> None:
        """Random cases (hypothesis, derandomized), shrunk to a small reproduction on failure."""
        label = f"{operation.label} [{mode.value}{', ' + repr(path_parameters) if path_parameters else ''}]"
        strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters or None)

        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @given(case=strategy, send_token=st.booleans())
        def run(case, send_token):
            self.send(case, label, send_token)

        try:
            run()
        except Unsatisfiable:
            # nothing in the operation can be made invalid (no parameters, or only a path segment)
            assert mode == GenerationMode.NEGATIVE, label
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - a falsifying example, reported at the end
            self._failed(label, exc)


def _give_means(base_url: str, *callers: dict) -> None:
    """A budget and a deposit that covers it, for each caller; returns once the click path knows."""
    for headers in callers:
        budget = requests.put(f"{base_url}/rest/v2/user/budget", json={"amount": 500}, headers=headers, timeout=10)
        assert budget.status_code == 200, budget.text
        assert deposit(base_url, headers, 1000).status_code == 201
    for headers in callers:

        def has_means(headers=headers) -> bool:
            return requests.get(f"{base_url}/rest/v2/user/wallet", headers=headers, timeout=10).json()["has_means"]

        assert eventually(has_means), "the deposit gave no means"


def _flattr(base_url: str, headers: dict, thing_id: int) -> requests.Response:
    return requests.post(f"{base_url}/rest/v2/things/{thing_id}/flattr", headers=headers, timeout=10)


@pytest.mark.parametrize("half", [0, 1], ids=["first-half", "second-half"])
def test_gateway_keeps_to_its_openapi_document(gateway, half):
    """Every operation (half of them in each run, so two workers share the work), by coverage
    cases and random ones, positive and negative: each answer keeps to the document."""
    schema = schemathesis.openapi.from_dict(load_openapi())
    user, headers = user_with_token(gateway)
    thing_id = create_thing(gateway, headers)
    prober = Prober(gateway, headers, (user["username"], user["password"]))

    # The caller has means, so flattrs and subscriptions reach their happy paths: someone else owns
    # things for the caller to flattr and subscribe to, and flattrs the caller's thing, so the lists
    # and activities (both ways) are not empty.
    _, other = user_with_token(gateway)
    to_flattr, to_subscribe, flattred = (create_thing(gateway, other) for _ in range(3))
    _give_means(gateway, headers, other)
    assert _flattr(gateway, headers, flattred).status_code == 200
    assert _flattr(gateway, other, thing_id).status_code == 200
    subscribe = f"{gateway}/rest/v2/things/{flattred}/subscriptions"
    subscribed = requests.post(subscribe, json={"months": 3}, headers=headers, timeout=10)
    assert subscribed.status_code == 201, subscribed.text
    # (METHOD, path) -> the thing a second, positive fuzz run of the operation is given
    on_a_real_thing = {
        ("POST", "/rest/v2/things/{id}/flattr"): to_flattr,  # 200, then flattr_once
        ("GET", "/rest/v2/things/{id}/flattrs"): flattred,
        ("POST", "/rest/v2/things/{id}/subscriptions"): to_subscribe,  # 201, then subscribed
        ("PUT", "/rest/v2/things/{id}/subscriptions"): to_subscribe,
        ("DELETE", "/rest/v2/things/{id}/subscriptions"): to_subscribe,
    }

    # revoking tokens by random ids may revoke the caller's own: that runs last, as someone else
    throwaway, throwaway_bearer = user_with_token(gateway)

    operations = sorted((result.ok() for result in schema.get_all_operations()), key=lambda op: op.label)[half::2]
    if "POST /rest/v2/things/{id}/subscriptions" not in {operation.label for operation in operations}:
        # the other half makes the subscription that changing and ending one here need
        made = requests.post(f"{gateway}/rest/v2/things/{to_subscribe}/subscriptions", headers=headers, timeout=10)
        assert made.status_code == 201, made.text
    # DELETE last: a random id may hit the thing the other operations are given by id
    operations.sort(key=lambda op: (op.method.upper() == "DELETE", op.path.startswith("/rest/v2/user/tokens/")))
    started = time.monotonic()
    for operation in operations:
        method = operation.method.upper()
        if operation.path.startswith("/rest/v2/user/tokens/"):
            prober.bearer, prober.basic = throwaway_bearer, (throwaway["username"], throwaway["password"])
        if operation.path == "/rest/v2/things/{id}" and method in ("PATCH", "POST"):
            # bodies checked against a thing the caller owns, so validation (not 404) answers them
            prober.coverage(operation, id=thing_id)
        elif "{username}" in operation.path:
            prober.coverage(operation, username=user["username"])
        else:
            prober.coverage(operation)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            prober.fuzz(operation, mode, examples=FUZZ_EXAMPLES_OF.get(operation.label, FUZZ_EXAMPLES))
        if operation.path == "/rest/v2/things/{id}" and method == "GET":
            prober.fuzz(operation, GenerationMode.POSITIVE, id=str(thing_id))
            prober.fuzz(operation, GenerationMode.POSITIVE, examples=5, id=str(to_flattr))
        if (method, operation.path) in on_a_real_thing:
            thing = str(on_a_real_thing[method, operation.path])
            prober.fuzz(operation, GenerationMode.POSITIVE, examples=5, id=thing)
    elapsed = time.monotonic() - started

    # the happy paths were reached, so their answers were checked against the document too
    def seen(label: str) -> set[int]:
        return {
            status
            for name, counts in prober.statuses.items()
            if name.startswith(label + " [") and not name.endswith("(other methods)")
            for status in counts
        }

    expected = {
        "POST /rest/v2/things/{id}/flattr": {200, 401, 403, 404},
        "POST /rest/v2/flattr": {200, 400},
        "POST /rest/v2/things/{id}/subscriptions": {201, 400, 403, 404},
        "PUT /rest/v2/things/{id}/subscriptions": {200, 404},
        "DELETE /rest/v2/things/{id}/subscriptions": {204, 404},
        "GET /rest/v2/things/{id}/flattrs": {200, 404},
    }
    mine = {operation.label for operation in operations}
    unreached = {label: sorted(statuses - seen(label)) for label, statuses in expected.items() if label in mine and statuses - seen(label)}
    if unreached:
        prober.failures.append(f"--- answers never reached, so never checked: {unreached}")

    if prober.failures:
        statuses = "\n".join(f"{label}: {dict(counts)}" for label, counts in prober.statuses.items())
        statuses += "".join(f"\nknown bug, not checked: {known}" for known in prober.known)
        pytest.fail(
            f"{len(prober.failures)} case(s) broke the document ({elapsed:.0f}s of requests):\n\n"
            + "\n\n".join(prober.failures)
            + f"\n\nstatuses seen:\n{statuses}",
            pytrace=False,
        )


def test_answers_the_fuzzer_cannot_reach_keep_to_the_document(gateway, gateway_factory):
    """OAuth tokens, missing scopes, found lookups and rate limits, checked against the document."""
    from tests.web_forms import csrf_token, register_app, web_sign_up

    schema = schemathesis.openapi.from_dict(load_openapi())
    user, personal = user_with_token(gateway)
    thing_id = create_thing(gateway, personal, url="https://example.com/found")

    # a token issued to an OAuth client application
    browser, web_user = web_sign_up(gateway)
    web_personal = bearer(personal_token(gateway, {"username": web_user, "password": PASSWORD}))
    redirect_uri = "https://reader.example/callback"
    client_id, secret = register_app(gateway, browser, redirect_uri)
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": "flattr thing"}
    consent = browser.get(f"{gateway}/oauth/authorize", params=query)
    approved = browser.post(
        f"{gateway}/oauth/authorize",
        params=query,
        data={"csrf_token": csrf_token(consent), "confirm": "yes"},
        allow_redirects=False,
    )
    code = parse_qs(urlsplit(approved.headers["Location"]).query)["code"][0]
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    form = "application/x-www-form-urlencoded"
    client = {"auth": (client_id, secret)}
    token = _conforms(gateway, schema, "POST /oauth/token", 200, body=exchange, media_type=form, call=client)
    replayed = {"Authorization": f"Bearer {token.json()['access_token']}"}
    # the code worked once (used again, it revokes the token it issued); a wrong client secret is invalid_client
    _conforms(gateway, schema, "POST /oauth/token", 400, body=exchange, media_type=form, call=client)
    _conforms(gateway, schema, "POST /oauth/token", 401, body=exchange, media_type=form, call={"auth": (client_id, "wrong")})
    assert eventually(lambda: requests.get(f"{gateway}/rest/v2/user", headers=replayed, timeout=10).status_code == 401)
    # a JSON body, as old clients sent it, for a fresh code
    consent = browser.get(f"{gateway}/oauth/authorize", params=query)
    approved = browser.post(
        f"{gateway}/oauth/authorize", params=query, data={"csrf_token": csrf_token(consent), "confirm": "yes"}, allow_redirects=False
    )
    exchange["code"] = parse_qs(urlsplit(approved.headers["Location"]).query)["code"][0]
    token = _conforms(gateway, schema, "POST /oauth/token", 200, body=exchange, media_type="application/json", call=client)
    oauth = {"Authorization": f"Bearer {token.json()['access_token']}"}

    # money endpoints refuse OAuth clients' tokens; the owner sees them listed
    _conforms(gateway, schema, "GET /rest/v2/user/budget", 403, call={"headers": oauth})
    _conforms(gateway, schema, "GET /rest/v2/user/tokens", 401, call={"headers": oauth})  # the password, not a token
    _conforms(gateway, schema, "GET /rest/v2/user/tokens", 401, call={"headers": web_personal})
    listed = _conforms(gateway, schema, "GET /rest/v2/user/tokens", 200, call={"auth": (web_user, PASSWORD)})
    assert {t["kind"] for t in listed.json()} == {"personal", "oauth"}
    # the OAuth token has no extendedread/email: the caller's profile has no private fields
    me = _conforms(gateway, schema, "GET /rest/v2/user", 200, call={"headers": oauth})
    assert "email" not in me.json()

    # a token without the thing, flattr or money scopes; a token without any scope is not made
    _, no_scope = user_with_token(gateway, scope="email")
    basic = {"auth": (user["username"], user["password"])}
    _conforms(gateway, schema, "POST /rest/v2/user/tokens", 400, body={"scope": ""}, media_type=form, call=basic)
    _conforms(gateway, schema, "PUT /rest/v2/user/budget", 403, body={"amount": 500}, media_type="application/json", call={"headers": no_scope})
    _conforms(gateway, schema, "GET /rest/v2/user/statements/{period}", 403, path_parameters={"period": "2026-01"}, call={"headers": no_scope})
    body = {"url": "https://example.com/not-allowed", "title": "Not allowed"}
    _conforms(gateway, schema, "POST /rest/v2/things", 403, body=body, media_type="application/json", call={"headers": no_scope})
    _conforms(
        gateway,
        schema,
        "PATCH /rest/v2/things/{id}",
        403,
        path_parameters={"id": thing_id},
        body={},
        media_type="application/json",
        call={"headers": no_scope},
    )
    # someone else's thing
    _, stranger = user_with_token(gateway)
    _conforms(gateway, schema, "DELETE /rest/v2/things/{id}", 403, path_parameters={"id": thing_id}, call={"headers": stranger})
    taken = {**body, "url": "https://example.com/found"}
    _conforms(gateway, schema, "POST /rest/v2/things", 409, body=taken, media_type="application/json", call={"headers": stranger})
    _conforms(gateway, schema, "GET /rest/v2/things/{id}", 200, path_parameters={"id": str(thing_id)}, call={"headers": stranger})

    # flattring without means or without the flattr scope; subscribing to one's own thing; a
    # gateway whose click workers do not answer in time
    flattr, subscribe = "POST /rest/v2/things/{id}/flattr", "POST /rest/v2/things/{id}/subscriptions"
    on_thing = {"id": thing_id}
    refused = _conforms(gateway, schema, flattr, 401, path_parameters=on_thing, call={"headers": stranger})
    assert refused.json()["error"] == "no_means"
    refused = _conforms(gateway, schema, flattr, 403, path_parameters=on_thing, call={"headers": personal})
    assert refused.json()["error"] == "flattr_owner"
    refused = _conforms(gateway, schema, flattr, 403, path_parameters=on_thing, call={"headers": no_scope})
    assert refused.json()["error"] == "insufficient_scope"
    refused = _conforms(gateway, schema, subscribe, 403, path_parameters=on_thing, call={"headers": personal})
    assert refused.json()["error"] == "thing_owner"
    unanswered = gateway_factory(CLICK_TIMEOUT=0.001)
    refused = _conforms(unanswered, schema, flattr, 503, path_parameters=on_thing, call={"headers": stranger})
    assert refused.json()["error"] == "service_unavailable"

    # lookups that find the thing, by its URL and by an auto-submit URL
    found = _conforms(gateway, schema, "GET /rest/v2/things/lookup", 302, query={"url": "https://example.com/found"})
    assert found.headers["location"][0].endswith(f"/rest/v2/things/{thing_id}")  # schemathesis: lower-case, lists
    auto = f"https://flattr.example/submit/auto?user_id={user['username']}&url=https%3A%2F%2Fexample.com%2Ffound"
    _conforms(gateway, schema, "GET /rest/v2/things/lookup", 302, query={"url": auto})

    # rate limits on: the limit reached is a documented 403 with Retry-After
    limited = gateway_factory(FLATTR_RATE_LIMITS="address=2/minute;signup=1/minute")
    statuses = [_status_of(limited, "/rest/v2/categories") for _ in range(3)]
    assert statuses == [200, 200, 403], statuses
    _conforms(limited, schema, "GET /rest/v2/categories", 403)
    rate = _conforms(limited, schema, "GET /rest/v2/rate_limit", 200, call={"headers": personal})
    assert rate.json()["enabled"] is True
    sign_up = {"username": "limited", "email": "limited@example.com", "password": "long enough"}
    _conforms(limited, schema, "POST /rest/v2/users", 201, body=sign_up, media_type="application/json")
    again = {**sign_up, "username": "limited2"}
    _conforms(limited, schema, "POST /rest/v2/users", 403, body=again, media_type="application/json")


def _status_of(base_url: str, path: str) -> int:
    return requests.get(f"{base_url}{path}", timeout=10).status_code


# Odd but harmless input that once crashed the gateway with a 500, found by the fuzz test. Each is
# an operation of the document, the request data, and whether to send the caller's bearer token;
# every one must be refused with a 4xx.
JSON = "application/json"
ODD_INPUT = [
    # superscript digits pass str.isdigit() but not int()
    ("GET /rest/v2/things/{id}", {"path_parameters": {"id": "\u00b2"}}, False),
    ("GET /rest/v2/things/search", {"query": {"count": "\u00b2"}}, False),
    # repeated minus signs
    ("GET /rest/v2/things/search", {"query": {"page": "--1"}}, False),
    ("GET /rest/v2/user/things", {"query": {"count": "--5"}}, True),
    ("PUT /rest/v2/user/budget", {"body": {"amount": "--500"}, "media_type": "application/json"}, True),
    # a JSON integer past bigint once reached the payouts table
    ("POST /rest/v2/user/payouts", {"body": {"amount": 2**63, "idempotency_key": "k"}, "media_type": "application/json"}, True),
    # an unclosed IPv6 host makes urlsplit raise
    ("GET /rest/v2/things/lookup", {"query": {"url": "http://[abc"}}, False),
    # NUL characters reach PostgreSQL
    ("GET /rest/v2/users/{username}", {"path_parameters": {"username": "a\x00b"}}, False),
    ("GET /rest/v2/users/{username}/things", {"path_parameters": {"username": "a\x00b"}}, False),
    (
        "POST /oauth/token",
        {
            "body": {"grant_type": "authorization_code", "code": "x", "client_id": "a\x00b", "client_secret": "s"},
            "media_type": "application/x-www-form-urlencoded",
        },
        False,
    ),
    # a JSON _method that is not a string
    ("POST /rest/v2/things/{id}", {"path_parameters": {"id": 1}, "body": {"_method": [1]}, "media_type": JSON}, True),
    ("POST /rest/v2/things/{id}", {"path_parameters": {"id": 1}, "body": {"_method": True}, "media_type": JSON}, True),
    # lone surrogates in JSON strings cannot be encoded for PostgreSQL (or argon2)
    (
        "POST /rest/v2/things",
        {"body": {"url": "https://example.com/surrogate", "title": "abc\ud800def"}, "media_type": "application/json"},
        True,
    ),
    (
        "POST /rest/v2/users",
        {"body": {"username": "surrogate", "email": "s\ud800@example.com", "password": "12345678"}, "media_type": JSON},
        False,
    ),
    (
        "POST /rest/v2/users",
        {"body": {"username": "surrogate2", "email": "s2@example.com", "password": "1234567\ud800"}, "media_type": JSON},
        False,
    ),
]


def test_odd_input_is_refused_not_a_server_error(gateway):
    schema = schemathesis.openapi.from_dict(load_openapi())
    user, headers = user_with_token(gateway)
    create_thing(gateway, headers)
    prober = Prober(gateway, headers, (user["username"], user["password"]))
    for label, data, send_token in ODD_INPUT:
        case = schema.find_operation_by_label(label).Case(**data)
        try:
            prober.send(case, label, send_token)
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - reported at the end
            prober._failed(f"{label} {data!r}", exc)
    # and the one that needs HTTP Basic: a NUL in the username
    response = requests.post(f"{gateway}/rest/v2/user/tokens", auth=("a\x00b", "password"), timeout=10)
    if response.status_code >= 500:
        label = "POST /rest/v2/user/tokens with the Basic username 'a\\x00b'"
        prober.failures.append(f"--- {label}\n{response.status_code} {response.text}")
    assert not prober.failures, "\n\n".join(prober.failures)


# -- bugs of the code the fuzzer found ----------------------------------------------------------


def test_flattr_of_an_id_past_int64_is_not_found(gateway):
    _, headers = user_with_token(gateway)
    response = _flattr(gateway, headers, INT64_MAX + 1)
    assert (response.status_code, response.json()["error"]) == (404, "not_found"), response.text

