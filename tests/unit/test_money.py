import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.money import Money


def test_money_is_integer_cents_never_float():
    with pytest.raises(TypeError):
        Money(1.5)
    with pytest.raises(TypeError):
        Money(True)


def test_money_refuses_to_mix_currencies():
    with pytest.raises(ValueError):
        Money(100, "EUR") + Money(100, "USD")
    with pytest.raises(TypeError):
        Money(100) + 5


def test_money_prints_as_a_person_reads_it():
    assert str(Money(123456)) == "1234.56 EUR"
    assert str(Money(-5)) == "-0.05 EUR"


@given(st.integers(-10**12, 10**12), st.integers(-10**12, 10**12))
def test_addition_and_subtraction_are_exact(a, b):
    assert (Money(a) + Money(b)).cents == a + b
    assert (Money(a) + Money(b) - Money(b)) == Money(a)
