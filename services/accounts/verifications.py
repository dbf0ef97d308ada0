"""Ownership checks as a queue: an RPC records a request and answers at once; the verification
pool (``verification_pool``) does the slow part, fetching and parsing, apart from the RPCs.

Why a queue in the database, and not the check inside the RPC: a check takes up to
``CLAIM_FETCH_TIMEOUT`` seconds (twice that for a host), and a slow page is the claimant's to
choose. Inside an RPC it held an accounts RPC worker and the gateway's RPC connection for all
that time, so a few slow claims at once starved the platform. Now the RPC only writes a row;
a small pool of its own (``CLAIM_WORKERS`` per accounts process) takes rows with ``FOR UPDATE
SKIP LOCKED`` (replicas share the queue), checks with no transaction open, and finishes the row
and the ownership change in one transaction. The gateway asks for the outcome with short RPCs
(``get_verification``) while it waits, and answers "pending" if it takes longer.

Limits per user, checked when a request is recorded:

- one check at a time (a unique index over a user's open checks): asking again for the same
  check answers the one in progress, asking for another is ``RateLimited``;
- ``CLAIM_CHECKS_PER_HOUR`` checks an hour;
- a cached verdict: a check that failed less than ``CLAIM_VERDICT_SECONDS`` ago is answered
  again as it was, without fetching.

A check whose worker died (the process killed mid-fetch) is taken again once its lease ran out;
after ``MAX_ATTEMPTS`` it fails.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import eventlet
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from services.accounts import hosts, ownership, page_checks, page_fetch, sites, verification_pool
from services.accounts.models import User, Verification
from services.accounts.things import live_thing
from services.common import settings
from services.common.errors import ClaimRefused, Forbidden, InvalidParameters, NotFound, RateLimited, UserNotFound
from services.common.paging import MAX_ID
from services.common.times import unix

OPEN = ("pending", "running")
MAX_ATTEMPTS = 3
ON_VALUES = ("on", "true", "1", "yes")


@dataclass(frozen=True)
class Limits:
    rules: page_fetch.Rules
    per_hour: int
    verdict_seconds: float

    @classmethod
    def from_config(cls, config: dict) -> "Limits":
        def get(name):
            return settings.setting(config, name)

        rules = page_fetch.Rules(
            timeout=float(get("CLAIM_FETCH_TIMEOUT")),
            max_bytes=int(get("CLAIM_MAX_BYTES")),
            allow_private=get("CLAIM_ALLOW_PRIVATE_ADDRESSES").strip().lower() in ON_VALUES,
        )
        return cls(rules, int(get("CLAIM_CHECKS_PER_HOUR")), float(get("CLAIM_VERDICT_SECONDS")))

    @property
    def check_seconds(self) -> float:
        """The longest a check can take: a host's two fetches and two parses."""
        return 2 * (self.rules.timeout + 2 * page_checks.PARSE_SECONDS + 1)

    @property
    def lease_seconds(self) -> float:
        """How long a running check is left to its worker before another may take it."""
        return self.check_seconds + 10


def as_dict(row: Verification) -> dict:
    return {
        "id": row.id,
        "kind": row.kind,
        "target": row.target,
        "thing_id": row.thing_id,
        "state": row.state,
        "reason": row.reason,
        "created_at": unix(row.created_at),
        "finished_at": unix(row.finished_at),
    }


def _ago(seconds: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(seconds=seconds)


def _open_check(db, user_id: int) -> Verification | None:
    return db.scalar(select(Verification).where(Verification.user_id == user_id, Verification.state.in_(OPEN)))


def _username(db, user_id) -> str:
    username = db.scalar(select(User.username).where(User.id == user_id))
    if username is None:
        raise UserNotFound("no such user")
    return username


def _record(db, user_id: int, kind: str, target: str, thing_id: int | None, limits: Limits, retried: bool = False) -> dict:
    """The check of ``target`` for ``user_id``: the one in progress, a verdict given a moment
    ago, or a new pending one (within the user's limits)."""
    in_progress = _open_check(db, user_id)
    if in_progress is not None:
        if (in_progress.kind, in_progress.target, in_progress.thing_id) == (kind, target, thing_id):
            return as_dict(in_progress)
        raise RateLimited(f"one check at a time: your check of {in_progress.target} is still running")
    recent = db.scalar(
        select(Verification)
        .where(
            Verification.user_id == user_id,
            Verification.kind == kind,
            Verification.target == target,
            Verification.state == "failed",
            Verification.finished_at > _ago(limits.verdict_seconds),
        )
        .order_by(Verification.finished_at.desc())
        .limit(1)
    )
    if recent is not None:
        return as_dict(recent)
    this_hour = db.scalar(
        select(func.count()).select_from(Verification).where(Verification.user_id == user_id, Verification.created_at > _ago(3600))
    )
    if this_hour >= limits.per_hour:
        raise RateLimited(f"at most {limits.per_hour} ownership checks an hour; try again later")
    row = Verification(user_id=user_id, kind=kind, target=target, thing_id=thing_id)
    db.add(row)
    try:
        db.flush()
    except IntegrityError:  # a concurrent request of the same user recorded one first
        db.rollback()
        if retried:
            raise
        return _record(db, user_id, kind, target, thing_id, limits, retried=True)
    db.after_commit(verification_pool.wake)
    db.commit()
    db.refresh(row)
    return as_dict(row)


def request_page(db, events, user_id, thing_id, limits: Limits) -> dict:
    """Ask for the thing's page to be checked for ``user_id``'s mark (a claim). Refused at once
    when the claim could not succeed whatever the page says; passed at once on the user's
    verified host."""
    if not isinstance(thing_id, int) or isinstance(thing_id, bool) or not 0 <= thing_id <= MAX_ID:
        raise NotFound("no such thing")
    _username(db, user_id)
    thing = live_thing(db, thing_id)
    if ownership.check_claimable(db, thing, user_id) == user_id:
        ownership.take_thing(db, events, user_id, thing_id)
        row = Verification(user_id=user_id, kind="page", target=thing.url, thing_id=thing_id, state="passed", finished_at=func.now())
        db.add(row)
        db.commit()
        db.refresh(row)
        return as_dict(row)
    return _record(db, user_id, "page", thing.url, thing.id, limits)


def request_host(db, user_id, host, limits: Limits) -> dict:
    """Ask for ``host`` to be checked for ``user_id`` (``/.well-known/flattr`` or the root
    page's head naming them). A host the user holds already answers passed at once."""
    host = sites.parse_host(host, limits.rules.allow_private)
    _username(db, user_id)
    holder = hosts.holder(db, host)
    if holder is not None and holder != user_id:
        raise Forbidden("this host is verified by another user")
    if holder == user_id:
        return {"id": None, "kind": "host", "target": host, "thing_id": None, "state": "passed", "reason": None,
                "created_at": None, "finished_at": None}
    return _record(db, user_id, "host", host, None, limits)


def get(db, user_id, verification_id) -> dict:
    row = db.get(Verification, verification_id) if isinstance(verification_id, int) and 0 < verification_id <= MAX_ID else None
    if row is None or row.user_id != user_id:
        raise NotFound("no such check")
    return as_dict(row)


def _latest(db, user_id, *where) -> Verification | None:
    return db.scalar(select(Verification).where(Verification.user_id == user_id, *where).order_by(Verification.id.desc()).limit(1))


def latest_claim(db, user_id, thing_id) -> dict:
    """The user's latest check of the thing's page."""
    row = _latest(db, user_id, Verification.kind == "page", Verification.thing_id == thing_id) if isinstance(thing_id, int) else None
    if row is None:
        raise NotFound("you have not claimed this thing")
    return as_dict(row)


def host_status(db, user_id, host, allow_private: bool) -> dict:
    """``{"host", "verified", "method", "verified_at", "check"}``: whether the user holds the host,
    and their latest check of it (None if none)."""
    try:
        host = sites.parse_host(host, allow_private)
    except InvalidParameters:
        raise NotFound("no such host") from None
    held = hosts.held(db, user_id, host)
    latest = _latest(db, user_id, Verification.kind == "host", Verification.target == host)
    if held is None and latest is None:
        raise NotFound("you have not verified this host")
    status = hosts.host_dict(held) if held else {"host": host, "method": None, "verified_at": None}
    return dict(status, verified=held is not None, check=as_dict(latest) if latest else None)


# -- the pool's side ------------------------------------------------------------------------------


def _take_next(db, limits: Limits):
    """The oldest pending check (or one whose worker's lease ran out), marked running; None if none."""
    job = db.execute(
        text(
            "UPDATE accounts.verifications SET state = 'running', started_at = clock_timestamp(), attempts = attempts + 1 "
            "WHERE id = (SELECT id FROM accounts.verifications WHERE state IN ('pending', 'running') "
            "AND (state = 'pending' OR started_at < now() - make_interval(secs => :lease)) "
            "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) "
            "RETURNING id, user_id, kind, target, thing_id, attempts, started_at"
        ),
        {"lease": limits.lease_seconds},
    ).first()
    db.commit()
    return job


def _check(job, username: str, limits: Limits) -> tuple[bool, str | None, str | None]:
    """``(passed, reason, host method)``, with no transaction open."""
    outcome = None
    # the fetches keep to their own deadlines; this is the backstop for what sockets cannot bound
    with eventlet.Timeout(limits.check_seconds, False):
        try:
            if job.kind == "page":
                page_checks.check_page(job.target, username, limits.rules)
                outcome = (True, None, None)
            else:
                outcome = (True, None, page_checks.check_host(job.target, username, limits.rules))
        except ClaimRefused as exc:
            outcome = (False, exc.description, None)
    return outcome or (False, f"could not fetch: timed out after {limits.check_seconds:g} seconds", None)


def _finish(db, events, job, passed: bool, reason: str | None, method: str | None) -> None:
    """Record the outcome and, if it passed, the ownership it proves, in one transaction. A check
    that another worker took over meanwhile (this one outlived its lease) is left to that one."""
    row = db.scalar(select(Verification).where(Verification.id == job.id).with_for_update())
    if row is None or row.state != "running" or row.started_at != job.started_at:
        db.rollback()
        return
    if passed:
        try:
            if job.kind == "page":
                ownership.take_thing(db, events, job.user_id, job.thing_id)
            else:
                ownership.take_host(db, events, job.user_id, job.target, method)
        except NotFound:
            passed, reason = False, "the thing no longer exists"
        except Forbidden as exc:  # someone else's check passed first
            passed, reason = False, exc.description
    row.state = "passed" if passed else "failed"
    row.reason = reason
    row.finished_at = func.now()
    db.commit()


def run_next(db, events, limits: Limits) -> bool:
    """Take one check and carry it out; returns whether there was one."""
    job = _take_next(db, limits)
    if job is None:
        return False
    if job.attempts > MAX_ATTEMPTS:
        _finish(db, events, job, False, "the check could not be completed; try again", None)
        return True
    username = _username(db, job.user_id)
    db.rollback()  # no transaction (nor pooled connection) is held while the page is fetched
    _finish(db, events, job, *_check(job, username, limits))
    return True
