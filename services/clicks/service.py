"""The clicks service: periods, replicas for the click path, counters, flattr lists, subscriptions.

Click requests themselves are resolved by the click workers (``services.clicks.worker``), which
scale on their own; this service keeps what they read (the replicas of things and means, fed by
events) and owns the periods.
"""
from __future__ import annotations

import logging

from nameko.rpc import RpcProxy
from nameko.timer import timer
from sqlalchemy import select, text

from services.clicks import counts, periods, readers
from services.clicks.models import Subscription, outbox
from services.common import settings
from services.common.db import Database
from services.common.errors import InvalidParameters, NotFound, Subscribed, ThingOwner
from services.common.events import first_seen, subscriber
from services.common.outbox import Outbox
from services.common.paging import offset, page_and_count
from services.common.rpc import rpc
from services.common.things import SUBSCRIPTION_LENGTHS
from services.common.times import unix

log = logging.getLogger(__name__)

class ClicksService:
    name = "clicks"

    db = Database("CLICKS_DATABASE_URL")
    events = Outbox("clicks", "CLICKS_DATABASE_URL", outbox)
    accounts = RpcProxy("accounts")
    settlement = RpcProxy("settlement")

    @rpc
    def health(self):
        self.db.execute(select(1))
        return {"service": "clicks", "ok": True}

    # -- replicas ------------------------------------------------------------------------------

    def _upsert_thing(self, data: dict, occurred_at: str, deleted: bool):
        # a late, older event never overwrites a newer state
        self.db.execute(
            text(
                "INSERT INTO clicks.things (thing_id, owner_id, url, title, deleted, changed_at) "
                "VALUES (:i, :o, :u, :t, :d, :c) ON CONFLICT (thing_id) DO UPDATE SET owner_id = EXCLUDED.owner_id, "
                "url = EXCLUDED.url, title = EXCLUDED.title, deleted = EXCLUDED.deleted, changed_at = EXCLUDED.changed_at "
                "WHERE clicks.things.changed_at < EXCLUDED.changed_at"
            ),
            {"i": data["thing_id"], "o": data.get("owner_id"), "u": data["url"], "t": data.get("title", ""), "d": deleted, "c": occurred_at},
        )

    def _thing_event(self, event, deleted: bool):
        if first_seen(self.db, "clicks", event, event["type"]):
            self._upsert_thing(event["data"], event["occurred_at"], deleted=deleted)
        self.db.commit()

    @subscriber("accounts", "thing.created")
    def on_thing_created(self, event):
        self._thing_event(event, deleted=False)

    @subscriber("accounts", "thing.updated")
    def on_thing_updated(self, event):
        self._thing_event(event, deleted=False)

    @subscriber("accounts", "thing.claimed")
    def on_thing_claimed(self, event):
        self._thing_event(event, deleted=False)

    @subscriber("accounts", "thing.deleted")
    def on_thing_deleted(self, event):
        self._thing_event(event, deleted=True)

    def _apply_means(self, readers: list[dict], occurred_at: str) -> None:
        # a late, older change never overwrites a newer one
        self.db.execute(
            text(
                "INSERT INTO clicks.means (user_id, has_means, changed_at) "
                "SELECT u, m, CAST(:c AS timestamptz) FROM unnest(CAST(:u AS bigint[]), CAST(:m AS boolean[])) AS r(u, m) "
                "ON CONFLICT (user_id) DO UPDATE SET has_means = EXCLUDED.has_means, changed_at = EXCLUDED.changed_at "
                "WHERE clicks.means.changed_at < EXCLUDED.changed_at"
            ),
            {"u": [r["user_id"] for r in readers], "m": [r["has_means"] for r in readers], "c": occurred_at},
        )

    @subscriber("settlement", "means.changed")
    def on_means_changed(self, event):
        if first_seen(self.db, "clicks", event, "means.changed"):
            self._apply_means([event["data"]], event["occurred_at"])
        self.db.commit()

    @subscriber("settlement", "means.batch_changed")
    def on_means_batch_changed(self, event):
        """Many readers at once, after a settlement or a refund."""
        if first_seen(self.db, "clicks", event, "means.batch_changed"):
            self._apply_means(event["data"]["readers"], event["occurred_at"])
        self.db.commit()

    def _known_thing(self, thing_id: int):
        """The replica's copy of a thing, asking accounts when the replica has not heard of it."""
        row = self.db.execute(text("SELECT owner_id, deleted FROM clicks.things WHERE thing_id = :i"), {"i": thing_id}).first()
        if row is None:
            found = self.accounts.get_things([thing_id])
            if not found:
                raise NotFound("no such thing")
            owner = (found[0].get("owner") or {}).get("id")
            self.db.execute(
                text(
                    "INSERT INTO clicks.things (thing_id, owner_id, url, title, deleted, changed_at) "
                    "VALUES (:i, :o, :u, :t, false, '-infinity') ON CONFLICT DO NOTHING"
                ),
                {"i": thing_id, "o": owner, "u": found[0]["url"], "t": found[0]["title"]},
            )
            return owner
        if row.deleted:
            raise NotFound("no such thing")
        return row.owner_id

    # -- periods -------------------------------------------------------------------------------

    @rpc
    def open_period(self):
        """``{"id", "starts_at", "closes_at"}``: ``closes_at`` is when the monthly timer closes it
        (an operator may close it sooner)."""
        return readers.open_period(self.db)

    @rpc
    def close_period(self, expected=None):
        """Seal the open period (all its clicks committed), open the next, publish ``period.sealed``."""
        self._backfill_subscribers_means()
        sealed = periods.seal(self.db, expected)
        if sealed is None:
            self.db.rollback()
            return None
        closed, next_id = sealed
        totals = self.db.execute(
            text(
                "SELECT count(*) AS clicks, count(DISTINCT user_id) AS readers, "
                "(SELECT sealed_at FROM clicks.periods WHERE id = :p) AS sealed_at FROM clicks.clicks WHERE period_id = :p"
            ),
            {"p": closed},
        ).first()
        self.events.record(
            self.db,
            "period.sealed",
            {"period": closed, "next_period": next_id, "clicks": totals.clicks, "readers": totals.readers,
             "sealed_at": totals.sealed_at.isoformat()},
        )
        self.db.commit()
        log.info("period %s sealed with %s clicks; %s is open", closed, totals.clicks, next_id)
        return {"period": closed, "next_period": next_id}

    def _backfill_subscribers_means(self):
        """Subscribers the means replica has not heard of yet: ask settlement before sealing, so
        their subscription clicks are judged on real means."""
        unknown = list(
            self.db.execute(
                text("SELECT DISTINCT s.user_id FROM clicks.subscriptions s LEFT JOIN clicks.means m USING (user_id) WHERE m.user_id IS NULL")
            ).scalars()
        )
        for start in range(0, len(unknown), 1000):
            for user_id, has_means in self.settlement.means_of(unknown[start : start + 1000]).items():
                self.db.execute(
                    text("INSERT INTO clicks.means (user_id, has_means, changed_at) VALUES (:u, :m, '-infinity') ON CONFLICT DO NOTHING"),
                    {"u": int(user_id), "m": has_means},
                )
        self.db.commit()

    @timer(interval=60)
    def close_month(self):
        """At the calendar-month boundary, once across replicas: the advisory lock lets one replica
        try, and sealing the expected period makes a second attempt a no-op."""
        got_lock = self.db.execute(text("SELECT pg_try_advisory_xact_lock(hashtext('clicks:close_month'))")).scalar()
        if not got_lock:
            return
        row = self.db.execute(text("SELECT id, starts_at, now() AS now FROM clicks.periods WHERE state = 'open'")).first()
        if row is not None and periods.month_has_turned(row.starts_at, row.now):
            self.db.rollback()
            self.close_period(row.id)
        else:
            self.db.rollback()

    @timer(interval=settings.get_float("COUNTS_ANNOUNCE_SECONDS"))
    def announce_counts(self):
        """The clicks counted since the last tick, to accounts; one replica at a time (the others
        skip the tick rather than wait)."""
        if self.db.execute(text("SELECT pg_try_advisory_xact_lock(hashtext('clicks:announce_counts'))")).scalar():
            counts.announce(self.db, self.events)
        self.db.commit()

    @rpc
    def list_periods(self):
        rows = self.db.execute(
            text(
                "SELECT p.id, p.state, p.starts_at, p.sealed_at, p.archived_at, "
                "coalesce(p.archived_clicks, (SELECT count(*) FROM clicks.clicks c WHERE c.period_id = p.id)) AS clicks "
                "FROM clicks.periods p ORDER BY p.seq DESC"
            )
        )
        return [
            {"id": r.id, "state": r.state, "starts_at": unix(r.starts_at), "sealed_at": unix(r.sealed_at), "clicks": r.clicks,
             "archived_at": unix(r.archived_at)}
            for r in rows
        ]

    EXPORT_MAX_ROWS = 500000

    @rpc
    def export_clicks(self, period, after=None, limit=250000):
        """A sealed period's clicks for settlement, in pages of whole readers ordered by (reader,
        thing), after reader ``after``, as ``COPY`` text (see ``periods.export_page``).
        Settlement moves a period with a handful of these calls, never one message per click."""
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= self.EXPORT_MAX_ROWS:
            raise InvalidParameters(f"limit is 1 to {self.EXPORT_MAX_ROWS}")
        if after is not None and (not isinstance(after, int) or isinstance(after, bool)):
            raise InvalidParameters("after is a reader's id")
        page = periods.export_page(self.db, period, after, limit)
        self.db.rollback()
        return page

    # -- counters and lists --------------------------------------------------------------------

    @rpc
    def counts(self, thing_ids, user_id=None):
        """``{thing_id: {"flattrs", "last_flattr_at", "flattred"}}`` for the things' resources."""
        if not isinstance(thing_ids, list) or len(thing_ids) > 100:
            raise InvalidParameters("up to 100 thing ids")
        rows = self.db.execute(
            text(
                "SELECT t.id, coalesce(c.flattrs, 0) AS flattrs, c.last_flattr_at, "
                "EXISTS (SELECT 1 FROM clicks.clicks k WHERE k.period_id = (SELECT id FROM clicks.periods WHERE state = 'open') "
                "        AND k.thing_id = t.id AND k.user_id = :u) AS flattred "
                "FROM unnest(CAST(:ids AS bigint[])) AS t(id) LEFT JOIN clicks.thing_counters c ON c.thing_id = t.id"
            ),
            {"ids": thing_ids, "u": user_id},
        )
        return {str(r.id): {"flattrs": r.flattrs, "last_flattr_at": unix(r.last_flattr_at), "flattred": r.flattred} for r in rows}

    @rpc
    def flattrs(self, user_id=None, thing_id=None, page=1, count=30, thing_ids=None):
        """Clicks by a reader, or of a thing (or of any of ``thing_ids``), newest first."""
        page, limit = page_and_count(page, count)
        if user_id is not None:
            where, value = "user_id = :v", user_id
        elif thing_ids is not None:
            where, value = "thing_id = ANY(CAST(:v AS bigint[]))", list(thing_ids)
        else:
            where, value = "thing_id = :v", thing_id
        rows = self.db.execute(
            text(f"SELECT user_id, thing_id, period_id, created_at FROM clicks.clicks WHERE {where} ORDER BY id DESC OFFSET :o LIMIT :l"),
            {"v": value, "o": offset(page, limit), "l": limit},
        )
        return [{"user_id": r.user_id, "thing_id": r.thing_id, "period": r.period_id, "created_at": unix(r.created_at)} for r in rows]

    # -- subscriptions -------------------------------------------------------------------------

    def _subscription_dict(self, sub: Subscription) -> dict:
        return {
            "thing_id": sub.thing_id,
            "months": sub.periods_left,
            "paused": sub.paused,
            "created_at": unix(sub.created_at),
        }

    @rpc
    def subscribe(self, user_id, thing_id, months=None):
        if months is not None and months not in SUBSCRIPTION_LENGTHS:
            raise InvalidParameters(f"months must be one of {', '.join(map(str, SUBSCRIPTION_LENGTHS))} (or absent: until cancelled)")
        owner = self._known_thing(thing_id)
        if owner == user_id:
            raise ThingOwner("you cannot subscribe to your own thing")
        inserted = self.db.execute(
            text(
                "INSERT INTO clicks.subscriptions (user_id, thing_id, periods_left) VALUES (:u, :t, :m) "
                "ON CONFLICT (user_id, thing_id) DO NOTHING RETURNING id"
            ),
            {"u": user_id, "t": thing_id, "m": months},
        ).scalar()
        if inserted is None:
            raise Subscribed("you already subscribe to this thing")
        self.db.commit()
        return self._subscription_dict(self.db.get(Subscription, inserted))

    def _subscription(self, user_id, thing_id) -> Subscription:
        sub = self.db.scalar(select(Subscription).where(Subscription.user_id == user_id, Subscription.thing_id == thing_id).with_for_update())
        if sub is None:
            raise NotFound("you do not subscribe to this thing")
        return sub

    @rpc
    def toggle_subscription(self, user_id, thing_id):
        sub = self._subscription(user_id, thing_id)
        sub.paused = not sub.paused
        self.db.commit()
        return self._subscription_dict(sub)

    @rpc
    def unsubscribe(self, user_id, thing_id):
        self.db.delete(self._subscription(user_id, thing_id))
        self.db.commit()

    @subscriber("accounts", "user.deleted")
    def on_user_deleted(self, event):
        """A closed account's subscriptions end; its clicks stay (settlement charges them)."""
        if first_seen(self.db, "clicks", event, "user.deleted"):
            self.db.execute(text("DELETE FROM clicks.subscriptions WHERE user_id = :u"), {"u": event["data"]["user_id"]})
        self.db.commit()

    @rpc
    def subscriptions(self, user_id):
        rows = self.db.scalars(select(Subscription).where(Subscription.user_id == user_id).order_by(Subscription.id))
        return [self._subscription_dict(s) for s in rows]

    # -- for the web pages and the data export ---------------------------------------------------

    @rpc
    def reader_period(self, user_id):
        """The open period (as ``open_period``) with the reader's ``clicks`` in it, newest first."""
        return readers.reader_period(self.db, user_id)

    @rpc
    def period_counts(self, thing_ids):
        """``{thing_id: flattrs in the open period}``."""
        if not isinstance(thing_ids, list) or len(thing_ids) > 1000:
            raise InvalidParameters("up to 1000 thing ids")
        return readers.period_counts(self.db, thing_ids)

    @rpc
    def export_user(self, user_id):
        return readers.export(self.db, user_id)
