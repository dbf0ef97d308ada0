"""Leaving the platform: everything accounts holds about a user, as plain data for the export."""
from __future__ import annotations

from sqlalchemy import select

from services.accounts.models import AccessToken, OAuthClient, QueuedMail, Thing, User
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
