"""The accounts service: nameko entrypoints over the modules that hold its rules, one per subject.

- ``credentials``: users and passwords; ``budgets``: the monthly budget;
- ``tokens``: personal and OAuth access tokens and their checks; ``oauth_store``: client
  applications and authorization codes;
- ``things``: the catalog; ``search``: its search; ``counts``: click counts for the sorts;
- ``ownership``: claims (the page check itself is ``claims``);
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
    addresses, budgets, counts, credentials, leaving, notices, oauth_store, ownership, passwords, profiles, search, things, tokens,
)
from services.accounts.mail import MailQueue
from services.accounts.models import OAuthClient, User, outbox
from services.common import settings
from services.common.db import Database
from services.common.errors import UserNotFound
from services.common.events import batch_subscriber, first_seen, subscriber
from services.common.times import unix
from services.common.outbox import Outbox
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
        return credentials.user_dict(credentials.check_password(self.db, username, password))

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
    def thing_owners(self, ids):
        return things.thing_owners(self.db, ids)

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

    # -- claims ------------------------------------------------------------------------------

    @rpc
    def claim_thing(self, user_id, thing_id):
        return ownership.claim_thing(
            self.db,
            self.events,
            user_id,
            thing_id,
            timeout=float(settings.setting(self.config, "CLAIM_FETCH_TIMEOUT")),
            max_bytes=int(settings.setting(self.config, "CLAIM_MAX_BYTES")),
            allow_private=settings.setting(self.config, "CLAIM_ALLOW_PRIVATE_ADDRESSES").strip().lower() in ("on", "true", "1", "yes"),
        )

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
