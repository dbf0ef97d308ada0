"""The accounts service: nameko entrypoints over the modules that hold its rules, one per subject.

- ``credentials``: users and passwords; ``two_factor``: TOTP second factors and recovery codes;
  ``budgets``: the monthly budget;
- ``tokens``: personal and OAuth access tokens and their checks; ``oauth_store``: client
  applications and authorization codes;
- ``things``: the catalog; ``search``: its search; ``counts``: click counts for the sorts;
- ``verifications``: ownership checks (claims of a page, verification of a host) queued for the
  verification pool (``verification_pool``), which runs them apart from the RPCs; ``page_checks``,
  ``page_fetch`` and ``page_marks`` are the checks themselves, ``ownership`` what a passed check
  changes, ``hosts`` and ``sites`` the verified hosts; ``two_factor``: TOTP sign-in;
- ``addresses``: confirming an address by a mailed link; ``passwords``: changing and resetting
  one; ``profiles``: profile fields and privacy; ``mail``: the mail queue and its SMTP relay,
  ``notices``: the mails settlement's events call for; ``leaving``: the export and closing an
  account.

Each entrypoint passes its worker's session (``self.db``) and outbox (``self.events``) to a plain
function; the function commits its own work.
"""
from __future__ import annotations

from nameko.dependency_providers import Config
from nameko.rpc import RpcProxy
from sqlalchemy import select, text

from services.accounts import (
    addresses, budgets, counts, credentials, hosts, leaving, notices, oauth_store, passwords, profiles, search, sites, things, tokens,
    two_factor, verifications,
)
from services.accounts.mail import MailQueue
from services.accounts.models import OAuthClient, User, outbox
from services.accounts.verification_pool import verification_pool
from services.common.db import Database
from services.common.errors import UserNotFound
from services.common.events import batch_subscriber, first_seen, subscriber
from services.common.times import unix
from services.common.outbox import Outbox, unsent_before
from services.common.rpc import rpc


class AccountsService:
    name = "accounts"

    db = Database("ACCOUNTS_DATABASE_URL")
    events = Outbox("accounts", "ACCOUNTS_DATABASE_URL", outbox)
    mail = MailQueue("ACCOUNTS_DATABASE_URL")
    config = Config()
    settlement = RpcProxy("settlement")

    @rpc
    def health(self):
        self.db.execute(select(1))
        return {"service": "accounts", "ok": True}

    # -- users, passwords and budgets ------------------------------------------------------

    @rpc
    def register_user(self, username, email, password, profile=None):
        return credentials.register_user(self.db, self.events, self.mail, username, email, password, profile)

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

    @rpc
    def budget_changes_unsent(self, recorded_before):
        """Budget changes made at or before ``recorded_before`` (ISO 8601) that the outbox has not
        published yet: settlement charges the budgets in force at a seal only once this is 0."""
        count = unsent_before(self.db, outbox, "budget.changed", recorded_before)
        self.db.rollback()
        return count

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
    def register_client(self, owner_id, name, redirect_uri, confidential=True):
        return oauth_store.register_client(self.db, owner_id, name, redirect_uri, confidential)

    @rpc
    def get_client(self, client_id):
        return oauth_store.get_client(self.db, client_id)

    @rpc
    def check_client_secret(self, client_id, secret):
        return oauth_store.check_client_secret(self.db, client_id, secret)

    @rpc
    def store_authorization_code(self, code, client_id, user_id, redirect_uri, scope, code_challenge=None):
        oauth_store.store_authorization_code(self.db, code, client_id, user_id, redirect_uri, scope, code_challenge)

    @rpc
    def take_authorization_code(self, code, client_id):
        return oauth_store.take_authorization_code(self.db, self.events, code, client_id)

    @rpc
    def store_oauth_token(self, token, client_id, user_id, scope, code_id=None):
        oauth_store.store_oauth_token(self.db, token, client_id, user_id, scope, code_id)

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

    # -- addresses, passwords, profile and privacy, notices, leaving (for the web pages) ---------

    def _user(self, user_id, lock=False) -> User:
        user = self.db.get(User, user_id, with_for_update=lock)
        if user is None or user.deleted_at is not None:
            raise UserNotFound("no such user")
        return user

    @rpc
    def resend_confirmation(self, user_id):
        sent = addresses.resend(self.db, self.mail, self._user(user_id))
        self.db.commit()
        return sent

    @rpc
    def confirm_email(self, token):
        user = addresses.confirm(self.db, token)
        self.db.commit()
        return credentials.user_dict(user)

    @rpc
    def request_email_change(self, user_id, password, new_email):
        user = self._user(user_id)
        passwords.check(user, password)
        email = addresses.request_change(self.db, self.mail, user, new_email)
        self.db.commit()
        return {"email": email}

    @rpc
    def change_password(self, user_id, current, new):
        passwords.change(self.db, self.mail, self._user(user_id, lock=True), current, new)
        self.db.commit()

    @rpc
    def request_password_reset(self, who):
        """Mails a link if ``who`` names an account with a confirmed address; answers nothing either way."""
        passwords.request_reset(self.db, self.mail, who)
        self.db.commit()

    @rpc
    def reset_link_valid(self, token):
        return passwords.reset_link_user(self.db, token) is not None

    @rpc
    def reset_password(self, token, new_password):
        user = passwords.reset(self.db, token, new_password)
        self.db.commit()
        return credentials.user_dict(user)

    @rpc
    def update_profile(self, user_id, fields):
        user = self._user(user_id, lock=True)
        profiles.update(user, fields)
        self.db.commit()
        return credentials.user_dict(user)

    @rpc
    def set_privacy(self, user_id, hide_flattrs, hide_earnings):
        user = self._user(user_id, lock=True)
        profiles.set_privacy(user, hide_flattrs, hide_earnings)
        self.db.commit()
        return credentials.user_dict(user)

    @rpc
    def list_clients(self, owner_id):
        rows = self.db.scalars(select(OAuthClient).where(OAuthClient.owner_id == owner_id).order_by(OAuthClient.id))
        return [{"client_id": c.client_id, "name": c.name, "redirect_uri": c.redirect_uri, "created_at": unix(c.created_at)} for c in rows]

    @rpc
    def export_user(self, user_id):
        return leaving.export(self.db, self._user(user_id))

    @rpc
    def close_account(self, user_id, password):
        """Close the account (``leaving.close``): sign-in ends, data is erased, money is settled."""
        user = self._user(user_id, lock=True)
        passwords.check(user, password)
        leaving.close(self.db, self.events, self.mail, user)
        self.db.commit()

    @subscriber("settlement", "period.settled")
    def on_period_settled(self, event):
        """Mail each reader and creator of the period what it meant for them, a page of users per
        transaction; the event counts as handled only once every page is queued."""
        handled = self.db.execute(
            text("SELECT 1 FROM accounts.processed_events WHERE event_id = :e AND handler = 'period.settled'"), {"e": event["event_id"]}
        ).scalar()
        if handled:
            return
        period, after = event["data"]["period"], None
        while True:
            page = self.settlement.period_notices(period, after, notices.PAGE)
            notices.period_settled_page(self.db, self.mail, page)
            self.db.commit()
            if page["done"]:
                break
            after = page["last"]
        first_seen(self.db, "accounts", event, "period.settled")
        self.db.commit()

    @subscriber("settlement", "payout.completed")
    def on_payout_completed(self, event):
        if first_seen(self.db, "accounts", event, "payout.completed"):
            notices.payout_completed(self.db, self.mail, event["data"])
        self.db.commit()
