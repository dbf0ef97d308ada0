"""Notices mailed to users when settlement tells of something that concerns them: a settled
period (with a link to the statement, and escrow waiting for their unverified things) and a
completed payout. Only confirmed addresses of live accounts get them; each notice is queued
under a key naming its fact, so a redelivered event mails nobody twice."""
from __future__ import annotations

from sqlalchemy import select

from services.accounts import mail, mail_texts
from services.accounts.models import User

PAGE = 1000


def _recipients(session, user_ids: list[int]) -> dict[int, User]:
    if not user_ids:
        return {}
    users = session.scalars(
        select(User).where(User.id.in_(user_ids), User.email_verified_at.is_not(None), User.deleted_at.is_(None))
    )
    return {u.id: u for u in users}


def period_settled_page(session, mailer, page: dict) -> int:
    """Queue the notices for one page of ``settlement.period_notices``; returns how many were new."""
    period = page["period"]
    users = _recipients(session, [n["user_id"] for n in page["users"]])
    queued = 0
    for notice in page["users"]:
        user = users.get(notice["user_id"])
        if user is None:
            continue
        notice = dict(notice, currency=page["currency"])
        subject, body = mail_texts.period_settled(
            user.username, period, notice, mail.link(f"/statements/{period}"), mail.link("/dashboard")
        )
        queued += mailer.queue(session, f"period-settled:{period}:{user.id}", user.email, subject, body, user.id)
        if notice["escrow_waiting"]:
            subject, body = mail_texts.escrow_waiting(
                user.username, period, notice["escrow_waiting"], notice["escrow_total"], page["currency"], mail.link("/dashboard")
            )
            queued += mailer.queue(session, f"escrow-waiting:{period}:{user.id}", user.email, subject, body, user.id)
    return queued


def payout_completed(session, mailer, data: dict) -> bool:
    user = _recipients(session, [data["user_id"]]).get(data["user_id"])
    if user is None:
        return False
    subject, body = mail_texts.payout_completed(user.username, data["amount"], data["currency"], mail.link("/dashboard"))
    return mailer.queue(session, f"payout-completed:{data['payout_id']}", user.email, subject, body, user.id)
