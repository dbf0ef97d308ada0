"""The accounts service: users, credentials, tokens, OAuth clients, budgets and the things catalog."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta, timezone

import eventlet
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from eventlet import tpool
from nameko.dependency_providers import Config
from sqlalchemy import and_, func, not_, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from services.accounts import claims, rules
from services.accounts.models import AccessToken, AuthorizationCode, OAuthClient, Thing, User, outbox
from services.common import settings
from services.common.db import Database
from services.common.errors import ClaimRefused, Conflict, Forbidden, InvalidParameters, NotFound, Unauthorized, UserNotFound
from services.common.events import batch_subscriber, first_seen_many
from services.common.money import CURRENCY
from services.common.outbox import Outbox
from services.common.paging import MAX_ID, offset, page_and_count
from services.common.rpc import rpc
from services.common.things import MAX_TOKEN_NAME, title_from_url
from services.common.times import unix

MAX_BUDGET_CENTS = 100000
CODE_LIFETIME = timedelta(minutes=10)

_hasher = PasswordHasher()
# Verifying against this keeps the time of a log-in with an unknown username like a known one.
_DUMMY_HASH = _hasher.hash("not a real password")


def _digest(secret: str) -> str:
    """Tokens, codes and client secrets are random and long, so a plain SHA-256 is a safe lookup key."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _user_dict(user: User) -> dict:
    return {
        "id": user.id,
        "username": user.username,
        "firstname": user.firstname,
        "lastname": user.lastname,
        "avatar": user.avatar,
        "about": user.about,
        "city": user.city,
        "country": user.country,
        "email": user.email,
        "registered_at": unix(user.registered_at),
    }


def _thing_dict(thing: Thing, owner: User | None) -> dict:
    return {
        "id": thing.id,
        "url": thing.url,
        "title": thing.title,
        "description": thing.description,
        "category": thing.category,
        "language": thing.language,
        "tags": list(thing.tags or []),
        "hidden": bool(thing.hidden),
        "image": thing.image,
        "created_at": unix(thing.created_at),
        "updated_at": unix(thing.updated_at),
        "owner": {"id": owner.id, "username": owner.username} if owner else None,
    }


class AccountsService:
    name = "accounts"

    db = Database("ACCOUNTS_DATABASE_URL")
    events = Outbox("accounts", "ACCOUNTS_DATABASE_URL", outbox)
    config = Config()

    @rpc
    def health(self):
        self.db.execute(select(1))
        return {"service": "accounts", "ok": True}

    # -- users ---------------------------------------------------------------------------

    @rpc
    def register_user(self, username, email, password, profile=None):
        username = rules.validate_username(username)
        email = rules.validate_email(email)
        password = rules.validate_password(password)
        profile = rules.validate_profile(profile or {})
        if self.db.scalar(select(User.id).where(User.username == username)):
            raise Conflict("username is taken")
        if self.db.scalar(select(User.id).where(func.lower(User.email) == email.lower())):
            raise Conflict("email is already registered")
        user = User(username=username, email=email, password_hash=tpool.execute(_hasher.hash, password), **profile)
        self.db.add(user)
        try:
            self.db.flush()
        except IntegrityError:
            raise Conflict("username or email is already registered") from None
        self.events.record(self.db, "user.registered", {"user_id": user.id, "username": user.username})
        self.db.commit()
        return _user_dict(user)

    @rpc
    def authenticate_password(self, username, password):
        if not rules.is_storable(username) or not rules.is_storable(password):
            raise Unauthorized("username and password required")
        user = self.db.scalar(select(User).where(User.username == username))
        stored = user.password_hash if user else _DUMMY_HASH
        try:
            tpool.execute(_hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            raise Unauthorized("wrong username or password") from None
        if user is None:
            raise Unauthorized("wrong username or password")
        return _user_dict(user)

    @rpc
    def get_user(self, username=None, user_id=None):
        if username is not None and not rules.is_storable(username):
            raise UserNotFound("no such user")
        query = select(User).where(User.username == username) if username is not None else select(User).where(User.id == user_id)
        user = self.db.scalar(query)
        if user is None:
            raise UserNotFound("no such user")
        return _user_dict(user)

    @rpc
    def set_budget(self, user_id, amount):
        amount = rules.validate_budget(amount, MAX_BUDGET_CENTS)
        user = self.db.get(User, user_id, with_for_update=True)
        if user is None:
            raise UserNotFound("no such user")
        if user.budget_cents != amount:
            user.budget_cents = amount
            self.events.record(self.db, "budget.changed", {"user_id": user_id, "budget": amount, "currency": CURRENCY})
        self.db.commit()
        return {"amount": amount, "currency": CURRENCY}

    @rpc
    def get_budget(self, user_id):
        user = self.db.get(User, user_id)
        if user is None:
            raise UserNotFound("no such user")
        return {"amount": user.budget_cents, "currency": CURRENCY}

    # -- tokens --------------------------------------------------------------------------

    def _issue_token(self, user_id, kind, scopes, name="", client_pk=None) -> str:
        token = secrets.token_urlsafe(32)
        self.db.add(
            AccessToken(token_hash=_digest(token), user_id=user_id, kind=kind, client_id=client_pk, scopes=" ".join(scopes), name=name)
        )
        return token

    @rpc
    def create_personal_token(self, user_id, scope, name=""):
        scopes = rules.parse_scopes(scope)
        name = name or ""
        if not isinstance(name, str) or len(name) > MAX_TOKEN_NAME or not rules.is_storable(name):
            raise InvalidParameters(f"name must be text of at most {MAX_TOKEN_NAME} characters")
        token = self._issue_token(user_id, "personal", scopes, name)
        self.db.commit()
        return {"access_token": token, "token_type": "bearer", "scope": " ".join(scopes)}

    @rpc
    def list_tokens(self, user_id):
        rows = self.db.scalars(
            select(AccessToken).where(AccessToken.user_id == user_id, AccessToken.revoked_at.is_(None)).order_by(AccessToken.id)
        )
        return [{"id": t.id, "name": t.name, "scope": t.scopes, "kind": t.kind, "created_at": unix(t.created_at)} for t in rows]

    @rpc
    def revoke_token(self, user_id, token_id):
        result = self.db.execute(
            update(AccessToken)
            .where(AccessToken.id == token_id, AccessToken.user_id == user_id, AccessToken.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )
        if result.rowcount == 0:
            raise NotFound("no such token")
        # every gateway drops the token from its cache when it hears this
        self.events.record(self.db, "token.revoked", {"token_id": token_id, "user_id": user_id})
        self.db.commit()

    @rpc
    def authenticate_token(self, token):
        if not isinstance(token, str) or not token:
            raise Unauthorized("missing token")
        found = self._callers_by_digest([_digest(token)])
        if not found:
            raise Unauthorized("invalid or revoked token")
        return next(iter(found.values()))

    MAX_TOKENS_PER_CHECK = 200

    @rpc
    def authenticate_tokens(self, tokens):
        """Many tokens checked in one call: ``{sha256 of the token: caller}`` for the valid ones
        (the gateway keys its cache by that digest; the tokens themselves are not sent back)."""
        if not isinstance(tokens, list) or len(tokens) > self.MAX_TOKENS_PER_CHECK or not all(isinstance(t, str) and t for t in tokens):
            raise InvalidParameters(f"up to {self.MAX_TOKENS_PER_CHECK} non-empty token strings")
        return self._callers_by_digest(sorted({_digest(t) for t in tokens}))

    def _callers_by_digest(self, digests: list[str]) -> dict:
        rows = self.db.execute(
            select(AccessToken, User.username)
            .join(User, User.id == AccessToken.user_id)
            .where(AccessToken.token_hash.in_(digests), AccessToken.revoked_at.is_(None))
        ).all()
        return {
            access.token_hash: {
                "user_id": access.user_id,
                "username": username,
                "scopes": access.scopes.split(),
                "kind": access.kind,
                "token_id": access.id,
            }
            for access, username in rows
        }

    # -- OAuth2 client applications and authorization codes ---------------------------------

    @rpc
    def register_client(self, owner_id, name, redirect_uri):
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
            raise InvalidParameters("the application needs a name of 1 to 100 characters")
        redirect_uri = rules.validate_url(redirect_uri, "redirect_uri")
        client_id = secrets.token_urlsafe(16)
        secret = secrets.token_urlsafe(32)
        self.db.add(OAuthClient(client_id=client_id, secret_hash=_digest(secret), name=name.strip(), redirect_uri=redirect_uri, owner_id=owner_id))
        self.db.commit()
        return {"client_id": client_id, "client_secret": secret, "name": name.strip(), "redirect_uri": redirect_uri}

    @rpc
    def get_client(self, client_id):
        if not rules.is_storable(client_id):
            raise NotFound("no such client")
        client = self.db.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
        if client is None:
            raise NotFound("no such client")
        return {"client_id": client.client_id, "name": client.name, "redirect_uri": client.redirect_uri}

    @rpc
    def check_client_secret(self, client_id, secret):
        if not rules.is_storable(client_id) or not rules.is_storable(secret):
            return False
        client = self.db.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
        return bool(client and isinstance(secret, str) and hmac.compare_digest(client.secret_hash, _digest(secret)))

    @rpc
    def store_authorization_code(self, code, client_id, user_id, redirect_uri, scope):
        scopes = rules.parse_scopes(scope)
        client = self.db.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
        if client is None:
            raise NotFound("no such client")
        self.db.add(
            AuthorizationCode(
                code_hash=_digest(code),
                client_id=client.id,
                user_id=user_id,
                redirect_uri=redirect_uri or client.redirect_uri,
                scopes=" ".join(scopes),
                expires_at=datetime.now(timezone.utc) + CODE_LIFETIME,
            )
        )
        self.db.commit()

    @rpc
    def take_authorization_code(self, code, client_id):
        """The grant behind a code, once: the code is deleted as it is read. None if unknown or expired."""
        if not isinstance(code, str) or not code:
            return None
        row = self.db.execute(
            select(AuthorizationCode, OAuthClient.client_id)
            .join(OAuthClient, OAuthClient.id == AuthorizationCode.client_id)
            .where(AuthorizationCode.code_hash == _digest(code))
            .with_for_update(of=AuthorizationCode)
        ).first()
        if row is None:
            return None
        grant, owner_client = row
        self.db.delete(grant)
        self.db.commit()
        if owner_client != client_id or grant.expires_at < datetime.now(timezone.utc):
            return None
        return {"user_id": grant.user_id, "redirect_uri": grant.redirect_uri, "scope": grant.scopes}

    @rpc
    def store_oauth_token(self, token, client_id, user_id, scope):
        client = self.db.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
        if client is None:
            raise NotFound("no such client")
        scopes = rules.parse_scopes(scope)
        self.db.add(
            AccessToken(token_hash=_digest(token), user_id=user_id, kind="oauth", client_id=client.id, scopes=" ".join(scopes), name=client.name)
        )
        self.db.commit()

    @rpc
    def catalog(self):
        return {
            "categories": [{"id": c, "name": n} for c, n in rules.CATEGORIES],
            "languages": [{"id": c, "text": n} for c, n in rules.LANGUAGES],
        }

    # -- counts from the click path, for the flattr sorts ---------------------------------------

    @batch_subscriber("clicks", "things.counted")
    def on_things_counted(self, events):
        """Counts for the search sorts, a batch of events in one transaction. Rows are locked in
        key order, in both tables, so two batches applied at once wait instead of deadlocking."""
        per_day: dict[tuple[int, str, str], int] = {}
        for event in first_seen_many(self.db, "accounts", events, "things.counted"):
            data = event["data"]
            for thing_id, n in data["counts"]:
                key = (int(thing_id), data["day"], data["period"])
                per_day[key] = per_day.get(key, 0) + int(n)
        if per_day:
            keys = sorted(per_day)
            self.db.execute(
                text(
                    "INSERT INTO accounts.thing_daily_counts (thing_id, day, period, flattrs) "
                    "SELECT c.t, c.d, c.p, c.n FROM unnest(CAST(:t AS bigint[]), CAST(:d AS date[]), CAST(:p AS text[]), CAST(:n AS bigint[])) "
                    "WITH ORDINALITY AS c(t, d, p, n, i) ORDER BY c.i "
                    "ON CONFLICT (thing_id, day, period) DO UPDATE SET flattrs = accounts.thing_daily_counts.flattrs + EXCLUDED.flattrs"
                ),
                {"t": [k[0] for k in keys], "d": [k[1] for k in keys], "p": [k[2] for k in keys], "n": [per_day[k] for k in keys]},
            )
            per_thing: dict[int, int] = {}
            for (thing_id, _, _), n in per_day.items():
                per_thing[thing_id] = per_thing.get(thing_id, 0) + n
            rows = {"ids": sorted(per_thing), "ns": [per_thing[t] for t in sorted(per_thing)]}
            self.db.execute(text("SELECT id FROM accounts.things WHERE id = ANY(CAST(:ids AS bigint[])) ORDER BY id FOR UPDATE"), rows)
            self.db.execute(
                text(
                    "UPDATE accounts.things t SET flattrs = t.flattrs + c.n "
                    "FROM unnest(CAST(:ids AS bigint[]), CAST(:ns AS bigint[])) AS c(id, n) WHERE t.id = c.id"
                ),
                rows,
            )
        self.db.commit()

    # -- things --------------------------------------------------------------------------

    def _live_thing(self, thing_id, lock=False) -> Thing:
        query = select(Thing).where(Thing.id == thing_id, Thing.deleted_at.is_(None))
        if lock:
            query = query.with_for_update()
        thing = self.db.scalar(query)
        if thing is None:
            raise NotFound("no such thing")
        return thing

    def _with_owners(self, things) -> list[dict]:
        owner_ids = {t.owner_id for t in things if t.owner_id}
        owners = {u.id: u for u in self.db.scalars(select(User).where(User.id.in_(owner_ids)))} if owner_ids else {}
        return [_thing_dict(t, owners.get(t.owner_id)) for t in things]

    def _insert_thing(self, owner_id, url, fields) -> Thing:
        existing = self.db.scalar(select(Thing.id).where(Thing.url == url, Thing.deleted_at.is_(None)))
        if existing:
            raise Conflict("a thing with this url already exists", existing_id=existing)
        thing = Thing(owner_id=owner_id, url=url, **fields)
        self.db.add(thing)
        try:
            self.db.flush()
        except IntegrityError:
            self.db.rollback()
            existing = self.db.scalar(select(Thing.id).where(Thing.url == url, Thing.deleted_at.is_(None)))
            raise Conflict("a thing with this url already exists", existing_id=existing) from None
        self.db.refresh(thing)
        return thing

    def _thing_event(self, event_type, thing: Thing):
        self.events.record(
            self.db,
            event_type,
            {"thing_id": thing.id, "owner_id": thing.owner_id, "url": thing.url, "title": thing.title, "hidden": bool(thing.hidden)},
        )

    @rpc
    def create_thing(self, owner_id, fields):
        if not isinstance(fields, dict):
            raise InvalidParameters("fields must be an object")
        url = rules.validate_url(fields.get("url"))
        if rules.auto_submit(url):
            raise InvalidParameters("url must be the thing's own URL, not an auto-submit URL")
        checked = rules.validate_thing_fields(fields, creating=True)
        thing = self._insert_thing(owner_id, url, checked)
        self._thing_event("thing.created", thing)
        self.db.commit()
        return self._with_owners([thing])[0]

    @rpc
    def create_unclaimed_thing(self, url, title=None):
        """A thing flattred by URL before its creator joined: no owner, titled from the URL."""
        url = rules.validate_url(url)
        fields = rules.validate_thing_fields({"title": title or title_from_url(url)}, creating=True)
        thing = self._insert_thing(None, url, fields)
        self._thing_event("thing.created", thing)
        self.db.commit()
        return self._with_owners([thing])[0]

    @rpc
    def get_things(self, ids):
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids) or len(ids) > 100:
            raise InvalidParameters("up to 100 integer ids")
        things = self.db.scalars(select(Thing).where(Thing.id.in_(ids), Thing.deleted_at.is_(None))).all()
        by_id = {d["id"]: d for d in self._with_owners(things)}
        return [by_id[i] for i in ids if i in by_id]

    @rpc
    def thing_owners(self, ids):
        """``{thing_id: owner_id or None}`` for settlement's replica, deleted things included
        (their clicks are still paid for); unknown ids are left out."""
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids) or len(ids) > 1000:
            raise InvalidParameters("up to 1000 integer ids")
        rows = self.db.execute(select(Thing.id, Thing.owner_id).where(Thing.id.in_(ids))).all()
        return {str(r.id): {"owner_id": r.owner_id, "verified": r.owner_id is not None} for r in rows}

    @rpc
    def update_thing(self, user_id, thing_id, fields):
        if not isinstance(fields, dict):
            raise InvalidParameters("fields must be an object")
        thing = self._live_thing(thing_id, lock=True)
        if thing.owner_id != user_id:
            raise Forbidden("only the thing's owner can change it")
        # Clients resend the read-only url with an update; the same url is fine, a new one is not.
        if "url" in fields and fields["url"] not in (None, thing.url):
            raise InvalidParameters("a thing's url cannot be changed")
        checked = rules.validate_thing_fields(fields, creating=False)
        for name, value in checked.items():
            setattr(thing, name, value)
        thing.updated_at = func.now()
        self.db.flush()
        self._thing_event("thing.updated", thing)
        self.db.commit()
        self.db.refresh(thing)
        return self._with_owners([thing])[0]

    @rpc
    def delete_thing(self, user_id, thing_id):
        thing = self._live_thing(thing_id, lock=True)
        if thing.owner_id != user_id:
            raise Forbidden("only the thing's owner can delete it")
        thing.deleted_at = func.now()
        self.db.flush()
        self._thing_event("thing.deleted", thing)
        self.db.commit()

    # -- claims --------------------------------------------------------------------------

    def _setting(self, name: str) -> str:
        value = self.config.get(name)
        return str(value) if value not in (None, "") else settings.get(name)

    @staticmethod
    def _claimable(thing: Thing, user_id) -> None:
        if thing.owner_id == user_id:
            raise Forbidden("you already own this thing")
        if thing.owner_id is not None:
            raise Forbidden("this thing is already owned by someone else")

    @rpc
    def claim_thing(self, user_id, thing_id):
        """Move an unclaimed thing to ``user_id`` once its page names them (see ``claims``).

        The page is fetched with no transaction open (it may take ``CLAIM_FETCH_TIMEOUT``); then
        the thing's row is locked and checked again, so of two concurrent claims one wins and the
        other is told the thing is owned. ``thing.claimed`` is written in the same transaction."""
        if not isinstance(thing_id, int) or isinstance(thing_id, bool) or not 0 <= thing_id <= MAX_ID:
            raise NotFound("no such thing")
        if not isinstance(user_id, int) or isinstance(user_id, bool):
            raise InvalidParameters("user_id must be an integer")
        thing = self._live_thing(thing_id)
        self._claimable(thing, user_id)
        username = self.db.scalar(select(User.username).where(User.id == user_id))
        if username is None:
            raise UserNotFound("no such user")
        url = thing.url
        self.db.rollback()  # no transaction (nor pooled connection) is held while the page is fetched

        timeout = float(self._setting("CLAIM_FETCH_TIMEOUT"))
        options = {
            "timeout": timeout,
            "max_bytes": int(self._setting("CLAIM_MAX_BYTES")),
            "allow_private": self._setting("CLAIM_ALLOW_PRIVATE_ADDRESSES").strip().lower() in ("on", "true", "1", "yes"),
        }
        # the fetch keeps to its own deadline; this is the backstop for what sockets cannot bound
        # (a slow name server, a server trickling its headers)
        verified = None
        with eventlet.Timeout(timeout + 0.5, False):
            verified = claims.verify_claim(url, username, **options)
        if verified is None:
            raise ClaimRefused(f"could not fetch: timed out after {timeout:g} seconds")

        thing = self._live_thing(thing_id, lock=True)
        self._claimable(thing, user_id)
        thing.owner_id = user_id
        thing.updated_at = func.now()
        self.db.flush()
        self._thing_event("thing.claimed", thing)
        self.db.commit()
        self.db.refresh(thing)
        return self._with_owners([thing])[0]

    @rpc
    def user_things(self, owner_id, include_hidden, page=1, count=30):
        page, count = page_and_count(page, count)
        query = select(Thing).where(Thing.owner_id == owner_id, Thing.deleted_at.is_(None))
        if not include_hidden:
            query = query.where(Thing.hidden.is_(False))
        things = self.db.scalars(query.order_by(Thing.id.desc()).offset(offset(page, count)).limit(count)).all()
        return self._with_owners(things)

    @rpc
    def lookup_url(self, url):
        """The live thing registered at ``url``; an auto-submit URL is looked up by its target URL."""
        if not isinstance(url, str) or not url:
            raise InvalidParameters("url is required")
        if not rules.is_storable(url):
            raise NotFound("no thing has this url")
        auto = rules.auto_submit(url)
        target = auto.url if auto else url
        thing_id = self.db.scalar(select(Thing.id).where(Thing.url == target, Thing.deleted_at.is_(None)))
        if thing_id is None:
            raise NotFound("no thing has this url")
        return thing_id

    @rpc
    def thing_for_url(self, url):
        """The thing to flattr for ``url``: the registered thing; for an auto-submit URL, its thing,
        created on this first flattr and owned by its ``user_id``; for any other http(s) URL, an
        unclaimed thing titled from the URL. Returns ``{"id", "created"}``."""
        url = rules.validate_url(url)
        auto = rules.auto_submit(url)
        target = rules.validate_url(auto.url) if auto else url
        existing = self.db.scalar(select(Thing.id).where(Thing.url == target, Thing.deleted_at.is_(None)))
        if existing:
            return {"id": existing, "created": False}
        if auto:
            owner = self.db.scalar(select(User.id).where(User.username == auto.username)) if rules.is_storable(auto.username) else None
            if owner is None:
                raise NotFound("the auto-submit URL names no user of this platform")
            fields = dict(auto.fields)
            fields.setdefault("title", title_from_url(target))
            checked = rules.validate_thing_fields(fields, creating=True)
        else:
            owner = None
            checked = rules.validate_thing_fields({"title": title_from_url(target)}, creating=True)
        try:
            thing = self._insert_thing(owner, target, checked)
        except Conflict as exc:  # created by a concurrent first flattr
            return {"id": exc.existing_id, "created": False}
        self._thing_event("thing.created", thing)
        self.db.commit()
        return {"id": thing.id, "created": True}

    @rpc
    def users_by_id(self, user_ids):
        if not isinstance(user_ids, list) or len(user_ids) > 1000:
            raise InvalidParameters("up to 1000 user ids")
        users = self.db.scalars(select(User).where(User.id.in_(user_ids)))
        return {str(u.id): {"id": u.id, "username": u.username} for u in users}

    @rpc
    def search_things(self, params, viewer_id=None):
        if not isinstance(params, dict):
            raise InvalidParameters("params must be an object")
        page, count = page_and_count(params.get("page"), params.get("count"))
        visible = Thing.hidden.is_(False)
        if viewer_id is not None:
            visible = or_(visible, Thing.owner_id == viewer_id)
        query = select(Thing).where(Thing.deleted_at.is_(None), visible)
        text_query = params.get("query")
        if text_query:
            pattern = "%" + text_query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            query = query.where(or_(Thing.title.ilike(pattern), Thing.description.ilike(pattern), Thing.url.ilike(pattern)))
        if params.get("url"):
            query = query.where(Thing.url == params["url"])
        if params.get("tags"):
            tag_query = rules.parse_tag_query(params["tags"])
            clauses = []
            for required, excluded in tag_query.groups:
                parts = []
                if required:
                    parts.append(Thing.tags.contains(list(required)))
                if excluded:
                    parts.append(not_(Thing.tags.overlap(list(excluded))))
                clauses.append(and_(*parts))
            query = query.where(or_(*clauses))
        for name, allowed in (("language", rules.LANGUAGE_IDS), ("category", rules.CATEGORY_IDS)):
            if params.get(name):
                values = [v for v in str(params[name]).split(",") if v]
                if any(v not in allowed for v in values):
                    raise InvalidParameters(f"unknown {name}")
                query = query.where(getattr(Thing, name).in_(values))
        if params.get("user"):
            owner = self.db.scalar(select(User.id).where(User.username == params["user"])) if rules.is_storable(params["user"]) else None
            # an unknown user owns nothing (and never matches the unclaimed things)
            query = query.where(Thing.owner_id == owner) if owner is not None else query.where(False)
        sort = params.get("sort") or "relevance"
        if sort not in ("trend", "flattrs", "flattrs_month", "flattrs_week", "flattrs_day", "relevance"):
            raise InvalidParameters("unknown sort")
        total = self.db.scalar(select(func.count()).select_from(query.subquery()))
        if sort == "relevance" and text_query:
            # title matches first, then the newest
            order = [Thing.title.ilike(pattern).desc(), Thing.id.desc()]
        elif sort == "relevance":
            order = [Thing.id.desc()]
        elif sort == "flattrs":
            order = [Thing.flattrs.desc(), Thing.id.desc()]
        else:
            score = rules.popularity(sort)
            order = [text(f"coalesce((SELECT {score} FROM accounts.thing_daily_counts c WHERE c.thing_id = things.id), 0) DESC"), Thing.id.desc()]
        things = self.db.scalars(query.order_by(*order).offset(offset(page, count)).limit(count)).all()
        return {"total_items": total, "page": page, "things": self._with_owners(things)}
