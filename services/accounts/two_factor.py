"""Two-factor sign-in (TOTP, RFC 6238), opt-in per user, with one-time recovery codes.

The RPCs the gateway builds its pages and token flows on (``AccountsService``):

- ``begin_two_factor(user_id) -> {"secret": str, "provisioning_uri": str}``: a new secret (base32)
  and its ``otpauth://`` URI for an authenticator app (show it as a QR code), pending until
  confirmed; asking again replaces a pending one. ``Conflict`` if two-factor is on already (turn
  it off first); ``Unavailable`` if ``TOTP_ENCRYPTION_KEYS`` is not set.
- ``confirm_two_factor(user_id, code) -> {"enabled": True, "recovery_codes": [str, ...]}``: a
  current code from the app turns two-factor on and answers ten recovery codes, shown once
  (``xxxx-xxxx-xxxx-xxxx``). ``InvalidParameters`` for a wrong code, ``NotFound`` without a
  pending set-up.
- ``check_two_factor(user_id, code) -> {"method": "totp" | "recovery", "recovery_codes_left": int}``:
  the second step of a sign-in (or of creating a personal token). ``code`` is a current TOTP code
  or an unused recovery code (spaces and dashes ignored); a recovery code works once, and a TOTP
  code once (a code seen once is refused again until the next 30-second step). ``Unauthorized``
  for a wrong code; after ``MAX_FAILURES`` wrong codes in a row, ``RateLimited`` for a lock that
  doubles with each further failure (from 1 minute up to an hour); ``NotFound`` if two-factor is
  off.
- ``disable_two_factor(user_id, code) -> None``: needs a valid code as ``check_two_factor`` does
  (the gateway asks for the password as well); forgets the secret and the recovery codes.
- ``new_recovery_codes(user_id, code) -> {"recovery_codes": [str, ...]}``: a valid code replaces all
  recovery codes with ten new ones.
- ``two_factor_status(user_id) -> {"enabled": bool, "pending": bool, "recovery_codes_left": int}``.
- ``authenticate_password`` answers ``"second_factor_required": true`` for a user with two-factor
  on: the password was right, and the gateway must ask for a code before it signs the user in.

At rest: the TOTP secret is encrypted with Fernet (AES-128-CBC with HMAC-SHA256, from the
``cryptography`` package) under ``TOTP_ENCRYPTION_KEYS``, a setting kept out of the database (the
first key encrypts, every listed key decrypts, so keys can be rotated), and bound to its user (the
plaintext names the user id, checked on decryption: a ciphertext copied onto another account does
not work). A copy of the database alone gives no secret. Recovery codes are random 80-bit values
stored only as their SHA-256 (like access tokens: too random to guess from the hash).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta, timezone

import pyotp
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import delete, func, select, update

from services.accounts.models import RecoveryCode, TwoFactor, User
from services.common import settings
from services.common.errors import Conflict, InvalidParameters, NotFound, RateLimited, Unauthorized, Unavailable, UserNotFound

ISSUER = "Flattr"
RECOVERY_CODES = 10
MAX_FAILURES = 5  # wrong codes in a row before the checks lock
FIRST_LOCK, LONGEST_LOCK = timedelta(minutes=1), timedelta(hours=1)
_RECOVERY_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # 32 symbols, none easy to misread


class Keys:
    """The encryption of TOTP secrets under ``TOTP_ENCRYPTION_KEYS``."""

    def __init__(self, setting: str | None):
        keys = [k.strip() for k in (setting or "").split(",") if k.strip()]
        self._fernet = MultiFernet([Fernet(k) for k in keys]) if keys else None

    @classmethod
    def from_config(cls, config: dict) -> "Keys":
        return cls(settings.setting(config, "TOTP_ENCRYPTION_KEYS"))

    def _ready(self) -> MultiFernet:
        if self._fernet is None:
            raise Unavailable("two-factor sign-in is not configured on this platform (TOTP_ENCRYPTION_KEYS)")
        return self._fernet

    def seal(self, user_id: int, secret: str) -> str:
        return self._ready().encrypt(f"{user_id}:{secret}".encode()).decode()

    def open(self, user_id: int, sealed: str) -> str:
        try:
            owner, _, secret = self._ready().decrypt(sealed.encode()).decode().partition(":")
        except InvalidToken:
            raise Unavailable("the two-factor secret cannot be read with the configured keys") from None
        if owner != str(user_id):
            raise Unavailable("the two-factor secret belongs to another account")
        return secret


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _normalised(code) -> str:
    if not isinstance(code, str) or len(code) > 64:
        return ""
    return "".join(c for c in code.lower() if c not in " -\t")


def _new_recovery_codes(db, user_id: int) -> list[str]:
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(16))
        db.add(RecoveryCode(user_id=user_id, code_hash=_digest(raw)))
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return codes


def _row(db, user_id, lock=False) -> TwoFactor | None:
    query = select(TwoFactor).where(TwoFactor.user_id == user_id)
    return db.scalar(query.with_for_update() if lock else query)


def _matching_step(totp: pyotp.TOTP, code: str, now: datetime) -> int | None:
    """The time step (±1 step of clock drift) whose code is ``code``, or None."""
    if not (code.isdigit() and len(code) == totp.digits):
        return None
    for drift in (-1, 0, 1):
        at = now + timedelta(seconds=drift * totp.interval)
        if hmac.compare_digest(totp.at(at), code):
            return totp.timecode(at)
    return None


def _recovery_left(db, user_id) -> int:
    return db.scalar(select(func.count()).select_from(RecoveryCode).where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)))


def begin(db, keys: Keys, user_id) -> dict:
    username = db.scalar(select(User.username).where(User.id == user_id))
    if username is None:
        raise UserNotFound("no such user")
    row = _row(db, user_id, lock=True)
    if row is not None and row.confirmed_at is not None:
        raise Conflict("two-factor sign-in is on already; turn it off first")
    secret = pyotp.random_base32()
    sealed = keys.seal(user_id, secret)
    if row is None:
        db.add(TwoFactor(user_id=user_id, secret_sealed=sealed))
    else:
        row.secret_sealed, row.last_step, row.failures, row.locked_until = sealed, None, 0, None
    db.commit()
    return {"secret": secret, "provisioning_uri": pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)}


def confirm(db, keys: Keys, user_id, code) -> dict:
    row = _row(db, user_id, lock=True)
    if row is None or row.confirmed_at is not None:
        raise NotFound("no two-factor set-up is waiting for a code")
    step = _matching_step(pyotp.TOTP(keys.open(user_id, row.secret_sealed)), _normalised(code), datetime.now(timezone.utc))
    if step is None:
        raise InvalidParameters("the code does not match: check the authenticator app's clock and try the next code")
    row.confirmed_at, row.last_step = func.now(), step
    codes = _new_recovery_codes(db, user_id)
    db.commit()
    return {"enabled": True, "recovery_codes": codes}


def _refuse(db, row: TwoFactor, now: datetime) -> None:
    """Count a wrong code (committed even though the call fails) and answer it."""
    row.failures += 1
    if row.failures >= MAX_FAILURES:
        row.locked_until = now + min(FIRST_LOCK * 2 ** (row.failures - MAX_FAILURES), LONGEST_LOCK)
    db.commit()
    raise Unauthorized("wrong two-factor code")


def _verify(db, keys: Keys, user_id, code) -> tuple[TwoFactor, str]:
    """Check ``code`` against the user's confirmed two-factor; returns the row (locked, in the
    caller's transaction) and the method that matched."""
    row = _row(db, user_id, lock=True)
    if row is None or row.confirmed_at is None:
        raise NotFound("two-factor sign-in is off for this user")
    now = datetime.now(timezone.utc)
    if row.locked_until is not None and row.locked_until > now:
        db.rollback()
        raise RateLimited("too many wrong codes; try again later")
    code = _normalised(code)
    step = _matching_step(pyotp.TOTP(keys.open(user_id, row.secret_sealed)), code, now)
    if step is not None and (row.last_step is None or step > row.last_step):
        row.last_step, row.failures, row.locked_until = step, 0, None
        return row, "totp"
    if step is None and code:
        used = db.execute(
            update(RecoveryCode)
            .where(RecoveryCode.user_id == user_id, RecoveryCode.code_hash == _digest(code), RecoveryCode.used_at.is_(None))
            .values(used_at=func.now())
        )
        if used.rowcount == 1:
            row.failures, row.locked_until = 0, None
            return row, "recovery"
    _refuse(db, row, now)
    raise AssertionError("unreachable")


def check(db, keys: Keys, user_id, code) -> dict:
    _, method = _verify(db, keys, user_id, code)
    db.commit()
    return {"method": method, "recovery_codes_left": _recovery_left(db, user_id)}


def disable(db, keys: Keys, user_id, code) -> None:
    _verify(db, keys, user_id, code)
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    db.execute(delete(TwoFactor).where(TwoFactor.user_id == user_id))
    db.commit()


def new_recovery_codes(db, keys: Keys, user_id, code) -> dict:
    _verify(db, keys, user_id, code)
    codes = _new_recovery_codes(db, user_id)
    db.commit()
    return {"recovery_codes": codes}


def status(db, user_id) -> dict:
    row = _row(db, user_id)
    enabled = row is not None and row.confirmed_at is not None
    return {"enabled": enabled, "pending": row is not None and not enabled, "recovery_codes_left": _recovery_left(db, user_id) if enabled else 0}


def required(db, user_id) -> bool:
    """Whether signing in as ``user_id`` needs a second factor."""
    return db.scalar(select(TwoFactor.user_id).where(TwoFactor.user_id == user_id, TwoFactor.confirmed_at.is_not(None))) is not None
