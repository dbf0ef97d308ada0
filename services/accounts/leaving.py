"""Leaving the platform: everything accounts holds about a user (the export), and closing an
account.

Closing settles money first, in this order:

- at once: the account can no longer sign in (password, every token revoked, also those its
  registered applications were given, and the applications deleted), its subscriptions end
  (``user.deleted``, heard by clicks), its profile and address are erased (the username becomes
  ``deleted-<id>``; the row stays, so the ledger's references keep a name), and its things lose
  their owner: they stay in the catalogue, and what readers give them waits in their escrow for
  a creator who proves the page is theirs, or goes back to the readers after the hold; the
  hosts it verified are given up;
- the flattrs it made in the open period are settled when that period closes, with the budget
  in force then, like everyone's, and its things' shares of that period reach its revenue;
- then settlement pays out everything the wallet and the revenue hold, in one final payout
  (``services.settlement.closing``), without the minimum; a final payout the provider refuses
  waits in the closed account's revenue for an operator;
- escrow already held for its unverified things stays in escrow as above.
"""
from __future__ import annotations

from sqlalchemy import func, select, update

from services.accounts import mail_texts
from services.accounts.models import AccessToken, OAuthClient, QueuedMail, Thing, User, VerifiedHost
from services.common.times import unix


def export(session, user: User) -> dict:
    things = session.scalars(select(Thing).where(Thing.owner_id == user.id).order_by(Thing.id))
    tokens = session.execute(
        select(AccessToken, OAuthClient.name).outerjoin(OAuthClient, OAuthClient.id == AccessToken.client_id)
        .where(AccessToken.user_id == user.id).order_by(AccessToken.id)
    )
    clients = session.scalars(select(OAuthClient).where(OAuthClient.owner_id == user.id).order_by(OAuthClient.id))
    mails = session.scalars(select(QueuedMail).where(QueuedMail.user_id == user.id).order_by(QueuedMail.id))
    return {
        "user": {
            "id": user.id, "username": user.username, "email": user.email, "email_confirmed": user.email_verified_at is not None,
            "firstname": user.firstname, "lastname": user.lastname, "avatar": user.avatar, "about": user.about,
            "city": user.city, "country": user.country, "registered_at": unix(user.registered_at),
            "budget": user.budget_cents, "hide_flattrs": user.hide_flattrs, "hide_earnings": user.hide_earnings,
        },
        "things": [
            {"id": t.id, "url": t.url, "title": t.title, "description": t.description, "category": t.category,
             "language": t.language, "tags": list(t.tags or []), "hidden": t.hidden, "image": t.image,
             "created_at": unix(t.created_at), "updated_at": unix(t.updated_at), "deleted_at": unix(t.deleted_at)}
            for t in things
        ],
        "tokens": [
            {"id": t.id, "kind": t.kind, "name": t.name, "application": client_name, "scope": t.scopes,
             "created_at": unix(t.created_at), "revoked_at": unix(t.revoked_at)}
            for t, client_name in tokens
        ],
        "applications": [
            {"client_id": c.client_id, "name": c.name, "redirect_uri": c.redirect_uri, "created_at": unix(c.created_at)} for c in clients
        ],
        "mails": [
            {"to": m.to_address, "subject": m.subject, "queued_at": unix(m.created_at), "sent_at": unix(m.sent_at)} for m in mails
        ],
    }


def close(session, events, mailer, user: User) -> None:
    """Close ``user``'s account (see the module's text); the caller checked the password."""
    clients = [c.id for c in session.scalars(select(OAuthClient).where(OAuthClient.owner_id == user.id))]
    revoked = session.execute(
        update(AccessToken)
        .where((AccessToken.user_id == user.id) | AccessToken.client_id.in_(clients or [-1]), AccessToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(AccessToken.id, AccessToken.user_id)
    ).all()
    for token_id, owner in revoked:
        events.record(session, "token.revoked", {"token_id": token_id, "user_id": owner})
    if clients:
        session.execute(OAuthClient.__table__.delete().where(OAuthClient.id.in_(clients)))
    # the hosts it proved are free for their next holder to prove
    session.execute(VerifiedHost.__table__.delete().where(VerifiedHost.user_id == user.id))
    for thing in session.scalars(select(Thing).where(Thing.owner_id == user.id).order_by(Thing.id).with_for_update()):
        thing.owner_id = None
        thing.owner_verified = False
        thing.updated_at = func.now()
        events.record(session, "thing.claimed", {"thing_id": thing.id, "owner_id": None, "verified": False, "url": thing.url,
                                                  "title": thing.title, "hidden": bool(thing.hidden)})
    if user.email_verified_at is not None:
        subject, body = mail_texts.account_closed(user.username)
        mailer.queue(session, f"account-closed:{user.id}", user.email, subject, body, user.id)
    user.username = f"deleted-{user.id}"
    user.email = f"deleted-{user.id}@invalid"
    user.email_verified_at = None
    user.password_hash = "!"  # matches no password
    for name in ("firstname", "lastname", "avatar", "about", "city", "country"):
        setattr(user, name, "")
    user.hide_flattrs = user.hide_earnings = True
    user.deleted_at = func.now()
    events.record(session, "user.deleted", {"user_id": user.id})
