"""The period split and the platform fee as plain rules: exact, never negative, deterministic."""
from hypothesis import assume, given
from hypothesis import strategies as st

from services.settlement import rules

amounts = st.integers(min_value=0, max_value=10**12)
things = st.lists(st.integers(min_value=1, max_value=2**62), min_size=1, max_size=300, unique=True)
readers = st.integers(min_value=1, max_value=2**62)
rates = st.integers(min_value=0, max_value=10000)


@given(amounts, things, readers)
def test_shares_sum_exactly_to_the_amount_and_are_never_negative(amount, thing_ids, reader):
    shares = rules.split_shares(amount, thing_ids, reader)
    assert sum(shares.values()) == amount
    assert set(shares) == set(thing_ids)
    assert all(share >= 0 for share in shares.values())


@given(amounts, things, readers)
def test_shares_are_equal_to_the_cent(amount, thing_ids, reader):
    shares = rules.split_shares(amount, thing_ids, reader).values()
    assert max(shares) - min(shares) <= 1
    assert min(shares) == amount // len(thing_ids)


@given(amounts, things, readers, st.randoms(use_true_random=False))
def test_the_split_depends_only_on_amount_things_and_reader(amount, thing_ids, reader, random):
    shuffled = list(thing_ids)
    random.shuffle(shuffled)
    assert rules.split_shares(amount, shuffled, reader) == rules.split_shares(amount, thing_ids, reader)


@given(st.integers(min_value=1, max_value=10**6), st.integers(min_value=2, max_value=50))
def test_leftover_cents_do_not_always_land_on_the_same_thing(amount, n):
    assume(amount % n != 0)
    thing_ids = list(range(1, n + 1))
    winners = {frozenset(t for t, s in rules.split_shares(amount, thing_ids, reader).items() if s > amount // n) for reader in range(n)}
    assert len(winners) > 1


@given(amounts, rates)
def test_the_fee_is_the_rate_rounded_down_to_the_cent(amount, bps):
    fee = rules.platform_fee(amount, bps)
    assert 0 <= fee <= amount
    # rounded down: never more than the exact rate, less by under a cent
    assert fee * 10000 <= amount * bps < (fee + 1) * 10000


def test_the_documented_examples():
    assert rules.platform_fee(1000, 1000) == 100
    assert rules.platform_fee(999, 1000) == 99  # 99.9 rounds down
    # 10 cents over things 3, 5, 7 (positions 0, 1, 2) for reader 1: 3 each, and the leftover cent
    # goes to the position p with (p + 1) % 3 < 1, that is p = 2, thing 7
    assert rules.split_shares(10, [7, 3, 5], reader_id=1) == {3: 3, 5: 3, 7: 4}
    assert rules.split_shares(10, [7, 3, 5], reader_id=2) == {3: 3, 5: 4, 7: 3}
    assert rules.charge_amount(500, 300) == 300
    assert rules.charge_amount(500, 900) == 500
    assert rules.charge_amount(None, 900) == 0
    assert rules.split_shares(0, [1, 2], 5) == {1: 0, 2: 0}
