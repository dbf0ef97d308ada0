"""Deposits: money into a reader's wallet through the payment provider, pending first.

A deposit is written as ``pending`` (its own commit) before the provider is asked, then the
provider's answer is recorded: a crash between the provider's yes and our ledger leaves a pending
deposit that ``complete_pending`` finishes; a refusal removes it. Functions on a session, the
outbox recorder and the provider, for the settlement service and the tests alike.
"""
from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.common.errors import Conflict, PaymentDeclined, ProviderError
from services.common.money import CURRENCY, Money
from services.common.times import unix
from services.settlement import ledger, money_flows
from services.settlement.models import Deposit
from services.settlement.providers import ProviderResult


def as_dict(deposit: Deposit) -> dict:
    return {
        "id": deposit.id,
        "amount": deposit.amount,
        "currency": CURRENCY,
        "idempotency_key": deposit.idempotency_key,
        "state": "completed",
        "created_at": unix(deposit.created_at),
    }


def reference(user_id: int, key: str) -> str:
    """Our reference for a deposit at the provider: the same for every attempt of one deposit."""
    return f"deposit-{user_id}-{key}"


def _existing(session: Session, user_id: int, key: str, amount: Money, lock: bool = False) -> Deposit | None:
    query = select(Deposit).where(Deposit.user_id == user_id, Deposit.idempotency_key == key)
    existing = session.scalar(query.with_for_update() if lock else query)
    if existing is not None and existing.amount != amount.cents:
        raise Conflict("this idempotency_key was used for a deposit of another amount")
    return existing


def deposit(session: Session, events, provider, user_id: int, amount: Money, key: str) -> tuple[Deposit, bool]:
    """Fund a wallet; the deposit, and whether this call made it (False: the same key again)."""
    existing = _existing(session, user_id, key, amount)
    if existing is not None and existing.state == "completed":
        return existing, False
    if existing is None:
        try:
            session.add(Deposit(user_id=user_id, amount=amount.cents, idempotency_key=key, provider_ref=reference(user_id, key), state="pending"))
            session.commit()
        except IntegrityError:
            session.rollback()  # a concurrent request with the same key wrote it first: go on with it
    result = provider.charge(reference(user_id, key), amount.cents)
    return finish(session, events, user_id, key, amount, result)


def finish(session: Session, events, user_id: int, key: str, amount: Money, result: ProviderResult) -> tuple[Deposit, bool]:
    """Record the provider's answer to a pending deposit, once; commits."""
    found = _existing(session, user_id, key, amount, lock=True)
    if found is None or found.state == "completed":
        session.commit()
        if found is None:
            raise PaymentDeclined(result.message or "the payment was declined")
        return found, False
    if not result.approved:
        session.delete(found)  # refused: nothing of it remains
        session.commit()
        if result.outcome == "declined":
            raise PaymentDeclined(result.message or "the payment was declined")
        raise ProviderError(result.message or "the payment provider failed")
    _complete(session, events, found, result)
    session.commit()
    return found, True


def _complete(session: Session, events, found: Deposit, result: ProviderResult) -> None:
    """Post an approved deposit to the wallet, once (the caller holds the deposit's row lock)."""
    wallet = ledger.account(session, "wallet", found.user_id)
    clearing = ledger.account(session, "clearing")
    posted = ledger.transfer(
        session, "deposit", f"deposit:{found.user_id}:{found.idempotency_key}", clearing, wallet, Money(found.amount),
        {"user_id": found.user_id, "provider_ref": result.reference},
    )
    found.state = "completed"
    found.transaction_id = posted.transaction_id
    session.flush()
    money_flows.refresh_means(session, events, found.user_id)


def complete_pending(session: Session, events, provider, older_than_seconds: int) -> int:
    """Deposits left pending by a crash: ask the provider again (it answers the same reference
    the same way) and record the answer. Safe in every replica at once; returns how many."""
    pending = session.execute(
        text(
            "SELECT user_id, idempotency_key, amount, provider_ref FROM settlement.deposits "
            "WHERE state = 'pending' AND created_at < now() - make_interval(secs => :s) ORDER BY id LIMIT 100"
        ),
        {"s": older_than_seconds},
    ).all()
    session.rollback()
    done = 0
    for row in pending:
        result = provider.charge(row.provider_ref, row.amount)
        try:
            finish(session, events, row.user_id, row.idempotency_key, Money(row.amount), result)
        except (PaymentDeclined, ProviderError):
            pass
        done += 1
    return done
