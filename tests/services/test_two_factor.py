"""Two-factor sign-in through the accounts service's RPCs, on the real broker and database: codes
come from pyotp with the secret the set-up answered, as an authenticator app makes them."""
from datetime import datetime, timedelta, timezone

import pyotp
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from services.common.errors import Conflict, InvalidParameters, NotFound, RateLimited, Unauthorized, Unavailable

PASSWORD = "a long password"


def code_at(secret, seconds_from_now=0):
    return pyotp.TOTP(secret).at(datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now))


def enrolled(accounts, name="alice"):
    user = accounts.register_user(name, f"{name}@example.com", PASSWORD)
    setup = accounts.begin_two_factor(user["id"])
    done = accounts.confirm_two_factor(user["id"], code_at(setup["secret"]))
    return user, setup["secret"], done["recovery_codes"]


def next_step_code(secret):
    """A code of the next 30-second step (accepted as clock drift): a code not used yet."""
    return code_at(secret, 30)


def test_set_up_confirm_and_sign_in_with_a_second_factor(accounts, db):
    user = accounts.register_user("alice", "alice@example.com", PASSWORD)
    assert accounts.authenticate_password("alice", PASSWORD)["second_factor_required"] is False
    assert accounts.two_factor_status(user["id"]) == {"enabled": False, "pending": False, "recovery_codes_left": 0}

    setup = accounts.begin_two_factor(user["id"])
    assert setup["provisioning_uri"].startswith("otpauth://totp/Flattr:alice?") and f"secret={setup['secret']}" in setup["provisioning_uri"]
    assert accounts.two_factor_status(user["id"])["pending"] is True
    # not on until confirmed
    assert accounts.authenticate_password("alice", PASSWORD)["second_factor_required"] is False
    with pytest.raises(InvalidParameters, match="the code does not match"):
        accounts.confirm_two_factor(user["id"], "000000" if code_at(setup["secret"]) != "000000" else "111111")
    done = accounts.confirm_two_factor(user["id"], code_at(setup["secret"]))
    assert done["enabled"] is True and len(done["recovery_codes"]) == 10 and len(set(done["recovery_codes"])) == 10
    assert accounts.two_factor_status(user["id"]) == {"enabled": True, "pending": False, "recovery_codes_left": 10}

    signed_in = accounts.authenticate_password("alice", PASSWORD)
    assert signed_in["id"] == user["id"] and signed_in["second_factor_required"] is True
    assert accounts.check_two_factor(user["id"], next_step_code(setup["secret"])) == {"method": "totp", "recovery_codes_left": 10}
    with pytest.raises(Conflict):
        accounts.begin_two_factor(user["id"])

    # at rest: the secret is sealed, the recovery codes hashed
    with db.connect() as conn:
        sealed = conn.execute(text("SELECT secret_sealed FROM accounts.two_factor")).scalar()
        hashes = conn.execute(text("SELECT code_hash FROM accounts.recovery_codes")).scalars().all()
    assert setup["secret"] not in sealed
    assert not {c.replace("-", "") for c in done["recovery_codes"]} & set(hashes)


def test_a_code_works_once_and_a_recovery_code_works_once(accounts):
    user, secret, recovery = enrolled(accounts)
    code = next_step_code(secret)
    accounts.check_two_factor(user["id"], code)
    with pytest.raises(Unauthorized):
        accounts.check_two_factor(user["id"], code)  # replayed
    # a recovery code, typed with spaces and in capitals
    typed = recovery[0].upper().replace("-", " ")
    assert accounts.check_two_factor(user["id"], typed) == {"method": "recovery", "recovery_codes_left": 9}
    with pytest.raises(Unauthorized):
        accounts.check_two_factor(user["id"], recovery[0])
    fresh = accounts.new_recovery_codes(user["id"], recovery[1])["recovery_codes"]
    assert len(fresh) == 10 and accounts.two_factor_status(user["id"])["recovery_codes_left"] == 10
    with pytest.raises(Unauthorized):
        accounts.check_two_factor(user["id"], recovery[2])  # the old ones are gone


def test_wrong_codes_lock_the_checks_for_a_while(accounts, db):
    user, secret, recovery = enrolled(accounts)
    for _ in range(5):
        with pytest.raises(Unauthorized, match="wrong two-factor code"):
            accounts.check_two_factor(user["id"], "not a code")
    with pytest.raises(RateLimited, match="too many wrong codes"):
        accounts.check_two_factor(user["id"], next_step_code(secret))  # even a right one, while locked
    with db.begin() as conn:  # a minute later
        conn.execute(text("UPDATE accounts.two_factor SET locked_until = now() - interval '1 second'"))
    assert accounts.check_two_factor(user["id"], recovery[0])["method"] == "recovery"

    def lock_minutes():
        with db.connect() as conn:
            return conn.execute(text("SELECT round(extract(epoch FROM locked_until - now()) / 60) FROM accounts.two_factor")).scalar()

    # a right code started the count again; each wrong code past the limit doubles the lock
    for _ in range(5):
        with pytest.raises(Unauthorized):
            accounts.check_two_factor(user["id"], "000000x")
    assert lock_minutes() == 1
    with db.begin() as conn:
        conn.execute(text("UPDATE accounts.two_factor SET locked_until = now() - interval '1 second'"))
    with pytest.raises(Unauthorized):
        accounts.check_two_factor(user["id"], "000000x")
    assert lock_minutes() == 2


def test_disable_needs_a_code_and_forgets_everything(accounts, db):
    user, secret, recovery = enrolled(accounts)
    with pytest.raises(Unauthorized):
        accounts.disable_two_factor(user["id"], "123")
    accounts.disable_two_factor(user["id"], recovery[3])
    assert accounts.two_factor_status(user["id"]) == {"enabled": False, "pending": False, "recovery_codes_left": 0}
    assert accounts.authenticate_password("alice", PASSWORD)["second_factor_required"] is False
    with pytest.raises(NotFound):
        accounts.check_two_factor(user["id"], next_step_code(secret))
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM accounts.recovery_codes")).scalar() == 0
    # and it can be set up again, with a new secret
    again = accounts.begin_two_factor(user["id"])
    assert again["secret"] != secret


def test_without_keys_two_factor_cannot_be_set_up(start_accounts):
    accounts = start_accounts(TOTP_ENCRYPTION_KEYS="")
    user = accounts.register_user("bob", "bob@example.com", PASSWORD)
    with pytest.raises(Unavailable, match="not configured"):
        accounts.begin_two_factor(user["id"])


def test_keys_rotate_and_a_secret_copied_to_another_account_does_not_work(start_accounts, db):
    from tests.conftest import TEST_TOTP_KEY

    new_key = Fernet.generate_key().decode()
    accounts = start_accounts(TOTP_ENCRYPTION_KEYS=f"{new_key},{TEST_TOTP_KEY}")
    alice = accounts.register_user("alice", "alice@example.com", PASSWORD)
    mallory = accounts.register_user("mallory", "mallory@example.com", PASSWORD)
    # alice's secret was sealed under the old key before the rotation: still opens
    from services.accounts.two_factor import Keys

    secret = pyotp.random_base32()
    with db.begin() as conn:
        conn.execute(
            text("INSERT INTO accounts.two_factor (user_id, secret_sealed, confirmed_at) VALUES (:u, :s, now())"),
            {"u": alice["id"], "s": Keys(TEST_TOTP_KEY).seal(alice["id"], secret)},
        )
    assert accounts.check_two_factor(alice["id"], code_at(secret))["method"] == "totp"
    # mallory copies alice's sealed secret onto her own account: it is refused
    with db.begin() as conn:
        conn.execute(
            text("INSERT INTO accounts.two_factor (user_id, secret_sealed, confirmed_at) SELECT :m, secret_sealed, now() FROM accounts.two_factor WHERE user_id = :a"),
            {"m": mallory["id"], "a": alice["id"]},
        )
    with pytest.raises(Unavailable, match="another account"):
        accounts.check_two_factor(mallory["id"], next_step_code(secret))
