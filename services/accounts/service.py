"""The accounts service: nameko entrypoints over the modules that hold its rules, one per subject.

- ``credentials``: users and passwords; ``two_factor``: TOTP second factors and recovery codes;
  ``budgets``: the monthly budget;
- ``tokens``: personal and OAuth access tokens and their checks; ``oauth_store``: client
  applications and authorization codes;
- ``things``: the catalog; ``search``: its search; ``counts``: click counts for the sorts;
- ``verifications``: ownership checks (claims of a page, verification of a host) queued for the
  verification pool (``verification_pool``), which runs them apart from the RPCs; ``page_checks``,
  ``page_fetch`` and ``page_marks`` are the checks themselves, ``ownership`` what a passed check
  changes, ``hosts`` and ``sites`` the verified hosts.

Each entrypoint passes its worker's session (``self.db``) and outbox (``self.events``) to a plain
function; the function commits its own work.
"""
from __future__ import annotations

from nameko.dependency_providers import Config
from sqlalchemy import select

from services.accounts import budgets, counts, credentials, hosts, oauth_store, search, sites, things, tokens, two_factor, verifications
from services.accounts.verification_pool import verification_pool
from services.accounts.models import outbox
from services.common.db import Database
from services.common.events import batch_subscriber
from services.common.outbox import Outbox
from services.common.rpc import rpc


class AccountsService:
    name = "accounts"

    db = Database("ACCOUNTS_DATABASE_URL")
    events = Outbox("accounts", "ACCOUNTS_DATABASE_URL", outbox)
    config = Config()

    @rpc
    def health(self):
        self.db.execute(select(1))
        return {"service": "accounts", "ok": True}

    # -- users, passwords and budgets ------------------------------------------------------

    @rpc
    def register_user(self, username, email, password, profile=None):
        return credentials.register_user(self.db, self.events, username, email, password, profile)

    @rpc
    def authenticate_password(self, username, password):
        """The user, with ``second_factor_required``: when true, the gateway must have a code
        checked (``check_two_factor``) before it signs them in or makes them a token."""
        user = credentials.check_password(self.db, username, password)
        return dict(credentials.user_dict(user), second_factor_required=two_factor.required(self.db, user.id))

    @rpc
    def get_user(self, username=None, user_id=None):
        return credentials.get_user(self.db, username, user_id)

    @rpc
    def users_by_id(self, user_ids):
        return credentials.users_by_id(self.db, user_ids)

    @rpc
    def set_budget(self, user_id, amount):
        return budgets.set_budget(self.db, self.events, user_id, amount)

    @rpc
    def get_budget(self, user_id):
        return budgets.get_budget(self.db, user_id)

    # -- two-factor sign-in (signatures: services.accounts.two_factor) -----------------------

    def _keys(self) -> two_factor.Keys:
        return two_factor.Keys.from_config(self.config)

    @rpc
    def begin_two_factor(self, user_id):
        return two_factor.begin(self.db, self._keys(), user_id)

    @rpc
    def confirm_two_factor(self, user_id, code):
        return two_factor.confirm(self.db, self._keys(), user_id, code)

    @rpc
    def check_two_factor(self, user_id, code):
        return two_factor.check(self.db, self._keys(), user_id, code)

    @rpc
    def disable_two_factor(self, user_id, code):
        two_factor.disable(self.db, self._keys(), user_id, code)

    @rpc
    def new_recovery_codes(self, user_id, code):
        return two_factor.new_recovery_codes(self.db, self._keys(), user_id, code)

    @rpc
    def two_factor_status(self, user_id):
        return two_factor.status(self.db, user_id)

    # -- tokens ------------------------------------------------------------------------------

    @rpc
    def create_personal_token(self, user_id, scope, name=""):
        return tokens.create_personal_token(self.db, user_id, scope, name)

    @rpc
    def list_tokens(self, user_id):
        return tokens.list_tokens(self.db, user_id)

    @rpc
    def revoke_token(self, user_id, token_id):
        tokens.revoke_token(self.db, self.events, user_id, token_id)

    @rpc
    def authenticate_tokens(self, tokens_to_check):
        return tokens.authenticate_tokens(self.db, tokens_to_check)

    # -- OAuth2 client applications and authorization codes ---------------------------------

    @rpc
    def register_client(self, owner_id, name, redirect_uri):
        return oauth_store.register_client(self.db, owner_id, name, redirect_uri)

    @rpc
    def get_client(self, client_id):
        return oauth_store.get_client(self.db, client_id)

    @rpc
    def check_client_secret(self, client_id, secret):
        return oauth_store.check_client_secret(self.db, client_id, secret)

    @rpc
    def store_authorization_code(self, code, client_id, user_id, redirect_uri, scope):
        oauth_store.store_authorization_code(self.db, code, client_id, user_id, redirect_uri, scope)

    @rpc
    def take_authorization_code(self, code, client_id):
        return oauth_store.take_authorization_code(self.db, code, client_id)

    @rpc
    def store_oauth_token(self, token, client_id, user_id, scope):
        oauth_store.store_oauth_token(self.db, token, client_id, user_id, scope)

    # -- the things catalog ------------------------------------------------------------------

    @rpc
    def catalog(self):
        return things.catalog()

    @rpc
    def create_thing(self, owner_id, fields):
        return things.create_thing(self.db, self.events, owner_id, fields)

    @rpc
    def create_unclaimed_thing(self, url, title=None):
        return things.create_unclaimed_thing(self.db, self.events, url, title)

    @rpc
    def get_things(self, ids):
        return things.get_things(self.db, ids)

    @rpc
    def update_thing(self, user_id, thing_id, fields):
        return things.update_thing(self.db, self.events, user_id, thing_id, fields)

    @rpc
    def delete_thing(self, user_id, thing_id):
        things.delete_thing(self.db, self.events, user_id, thing_id)

    @rpc
    def user_things(self, owner_id, include_hidden, page=1, count=30):
        return things.user_things(self.db, owner_id, include_hidden, page, count)

    @rpc
    def lookup_url(self, url):
        return things.lookup_url(self.db, url)

    @rpc
    def thing_for_url(self, url):
        return things.thing_for_url(self.db, self.events, url)

    @rpc
    def search_things(self, params, viewer_id=None):
        return search.search_things(self.db, params, viewer_id)

    @batch_subscriber("clicks", "things.counted")
    def on_things_counted(self, events):
        counts.apply_counted(self.db, events)

    # -- ownership: claims and verified hosts ------------------------------------------------

    def _limits(self) -> verifications.Limits:
        return verifications.Limits.from_config(self.config)

    @rpc
    def thing_owners(self, ids):
        return things.thing_owners(self.db, ids)

    @rpc
    def request_claim(self, user_id, thing_id):
        """Queue a check of the thing's page for ``user_id``'s mark; answers the check (``state``
        ``pending``, or already ``passed``/``failed``). Poll it with ``get_verification``."""
        return verifications.request_page(self.db, self.events, user_id, thing_id, self._limits())

    @rpc
    def claim_status(self, user_id, thing_id):
        return verifications.latest_claim(self.db, user_id, thing_id)

    @rpc
    def request_host(self, user_id, host):
        """Queue a check of ``host`` for ``user_id``; answers the check as ``request_claim`` does."""
        return verifications.request_host(self.db, user_id, host, self._limits())

    @rpc
    def get_verification(self, user_id, verification_id):
        return verifications.get(self.db, user_id, verification_id)

    @rpc
    def host_status(self, user_id, host):
        return verifications.host_status(self.db, user_id, host, self._limits().rules.allow_private)

    @rpc
    def list_hosts(self, user_id):
        return hosts.list_hosts(self.db, user_id)

    @rpc
    def give_up_host(self, user_id, host):
        hosts.give_up(self.db, user_id, sites.parse_host(host, self._limits().rules.allow_private))

    @verification_pool
    def run_verification(self):
        """One queued ownership check, on the verification pool; returns whether there was one."""
        return verifications.run_next(self.db, self.events, self._limits())
