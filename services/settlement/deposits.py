"""Deposits: money into a reader's wallet through the payment provider, pending first.

A deposit is written as ``pending`` (its own commit) before the provider is asked, then the
provider's answer is recorded. Only the request that wrote the pending row asks the provider to
charge: another request with the same key waits for that one's outcome, so no request can
record an answer to a charge it did not make. The provider's answer names the amount it charged,
and a deposit is credited only if that is the deposit's amount; otherwise it is kept as
``mismatched``, credited to nobody, for an operator.

A crash between the provider's yes and our ledger leaves a pending deposit that
``complete_pending`` finishes from the provider's record of it (or removes, when the provider
has none: the crash came before the charge). ``compare_with_provider`` checks every deposit
against the provider's records. Functions on a session, the outbox recorder and the provider,
for the settlement service, the ops command and the tests alike.
"""
from __future__ import annotations

import logging
import time

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.common.errors import Conflict, PaymentDeclined, ProviderError, Unavailable
from services.common.money import CURRENCY, Money
from services.common.times import unix
from services.settlement import ledger, money_flows
from services.settlement.models import Deposit
from services.settlement.providers import ProviderResult

log = logging.getLogger(__name__)

# how long a request waits for another request's deposit with the same key (the provider is
# still answering that one) before answering 503; well within the RPC timeout
PENDING_WAIT_SECONDS = 5.0
# a deposit pending this long was left by a crash: its request is long gone
ABANDONED_AFTER_SECONDS = 60
# the most differences one check lists (it counts them all)
MAX_LISTED = 100


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


def _mismatched() -> ProviderError:
    return ProviderError("the payment provider reported another amount than the deposit's; nothing was credited, an operator will look into it")


def deposit(session: Session, events, provider, user_id: int, amount: Money, key: str,
            wait_seconds: float = PENDING_WAIT_SECONDS) -> tuple[Deposit, bool]:
    """Fund a wallet; the deposit, and whether this call made it (False: the same key again)."""
    give_up_at = time.monotonic() + wait_seconds
    while True:
        existing = _existing(session, user_id, key, amount)
        if existing is not None and existing.state == "completed":
            session.commit()
            return existing, False
        if existing is not None and existing.state == "mismatched":
            session.commit()
            raise _mismatched()
        if existing is None:
            try:
                session.add(Deposit(user_id=user_id, amount=amount.cents, idempotency_key=key, provider_ref=reference(user_id, key), state="pending"))
                session.commit()
                break  # this request wrote it: this request asks the provider
            except IntegrityError:
                pass  # a concurrent request with the same key wrote it first
        # pending, and another request's: wait for its outcome (or its refusal, which removes the row)
        session.rollback()
        if time.monotonic() >= give_up_at:
            raise Unavailable("a deposit with this idempotency_key is still being processed; try again shortly")
        time.sleep(0.05)
    result = provider.charge(reference(user_id, key), amount.cents)
    return finish(session, events, user_id, key, amount, result)


def finish(session: Session, events, user_id: int, key: str, amount: Money, result: ProviderResult) -> tuple[Deposit, bool]:
    """Record the provider's answer to the pending deposit, once; commits."""
    found = _existing(session, user_id, key, amount, lock=True)
    if found is None or found.state != "pending":
        session.commit()
        if found is None:
            raise PaymentDeclined(result.message or "the payment was declined")
        if found.state == "mismatched":
            raise _mismatched()
        return found, False
    if not result.approved:
        session.delete(found)  # refused: nothing of it remains
        session.commit()
        if result.outcome == "declined":
            raise PaymentDeclined(result.message or "the payment was declined")
        raise ProviderError(result.message or "the payment provider failed")
    if result.amount != found.amount:
        found.state, found.provider_amount = "mismatched", result.amount
        session.commit()
        log.error("deposit %s (%s): the provider charged %s, the deposit is %s; not credited", found.id, found.provider_ref, result.amount, found.amount)
        raise _mismatched()
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


def complete_pending(session: Session, events, provider, older_than_seconds: int = ABANDONED_AFTER_SECONDS) -> int:
    """Deposits left pending by a crash, settled by what the provider recorded for them: charged
    (completed, if the amount is ours), refused or never asked (removed; the client's retry with
    the same key starts it again). Asks the provider no new charge. Safe in every replica at
    once; returns how many it settled."""
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
        record = provider.charge_record(row.provider_ref)
        result = record or ProviderResult("declined", row.provider_ref, "the payment provider has no record of this deposit")
        try:
            finish(session, events, row.user_id, row.idempotency_key, Money(row.amount), result)
        except (PaymentDeclined, ProviderError):
            pass
        done += 1
    return done


def compare_with_provider(session: Session, provider, pending_grace_seconds: int = ABANDONED_AFTER_SECONDS) -> dict:
    """The deposit check: every deposit against the provider's records of its charges. A
    difference is a deposit credited that the provider did not charge or charged another amount
    for, one the provider reported with another amount (``mismatched``), a charge still pending
    here after the grace, or a charge the provider made that no deposit here names."""
    charged = {record.reference: record for record in provider.charges()}
    rows = session.execute(
        text(
            "SELECT id, user_id, amount, state, provider_ref, provider_amount, "
            "created_at < now() - make_interval(secs => :s) AS overdue FROM settlement.deposits ORDER BY id"
        ),
        {"s": pending_grace_seconds},
    ).all()
    session.rollback()
    differences = []

    def differ(problem: str, row=None, reference: str | None = None, provider_amount: int | None = None) -> None:
        differences.append({
            "problem": problem,
            "reference": reference if row is None else row.provider_ref,
            "deposit_id": None if row is None else row.id,
            "user_id": None if row is None else row.user_id,
            "amount": None if row is None else row.amount,
            "provider_amount": provider_amount,
        })

    for row in rows:
        record = charged.pop(row.provider_ref, None)
        if row.state == "completed":
            if record is None:
                differ("credited, but the provider has no charge for it", row)
            elif record.amount != row.amount:
                differ("credited, but the provider charged another amount", row, provider_amount=record.amount)
        elif row.state == "mismatched":
            differ("the provider reported another amount; not credited", row, provider_amount=row.provider_amount)
        elif record is not None and row.overdue:
            differ("charged by the provider, still pending here", row, provider_amount=record.amount)
    for reference_, record in charged.items():
        differ("charged by the provider, no deposit here", reference=reference_, provider_amount=record.amount)
    return {
        "ok": not differences,
        "deposits": len(rows),
        "differences": len(differences),
        "listed": differences[:MAX_LISTED],
        "currency": CURRENCY,
    }
