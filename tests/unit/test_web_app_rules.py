"""Plain rules of the web app: amounts people type, charts, the monthly close, mail retries."""
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from services.accounts.mail import FIRST_RETRY_SECONDS, MAX_RETRY_SECONDS, retry_delay
from services.clicks.periods import month_end, month_has_turned
from services.common.money import Money, cents_from_text
from services.gateway.views.pages.charts import bar_chart, nice_step


@pytest.mark.parametrize("typed, cents", [("5", 500), ("5.5", 550), ("5.50", 550), ("5,50", 550), (" 20.00 ", 2000),
                                          ("€ 1 234.56", 123456), ("0.13", 13), (".5", 50), ("12 EUR", 1200)])
def test_amounts_people_type_become_cents(typed, cents):
    assert cents_from_text(typed) == cents


@pytest.mark.parametrize("typed", ["", "five", "-5", "5.555", "1e3", "5.", "5..5", "1.2.3", "+5"])
def test_what_is_not_an_amount_is_refused(typed):
    with pytest.raises(ValueError):
        cents_from_text(typed)


@given(st.integers(min_value=0, max_value=10**12))
def test_an_amount_shown_reads_back_as_the_same_cents(cents):
    assert cents_from_text(str(Money(cents))) == cents


@given(st.lists(st.integers(min_value=0, max_value=10**9), max_size=30))
def test_chart_bars_are_proportional_and_inside_the_plot(values):
    chart = bar_chart("test", [(f"p{i}", v) for i, v in enumerate(values)])
    assert len(chart.bars) == min(len(values), 24)
    top = chart.ticks[-1][0]
    for bar in chart.bars:
        assert bar.height >= 0 and bar.y >= top - 1e-6 and bar.y + bar.height <= chart.bottom + 1e-6
    tallest = max(chart.bars, key=lambda b: b.cents, default=None)
    if tallest is not None and tallest.cents:
        for bar in chart.bars:
            assert bar.height == pytest.approx(tallest.height * bar.cents / tallest.cents)


def test_chart_steps_are_round_and_cover_the_largest_value():
    assert nice_step(0) == 100
    assert nice_step(1800) == 500
    assert nice_step(123456) == 50000
    chart = bar_chart("Revenue per period", [("2026-11", 1800)])
    assert [label for _, label in chart.ticks] == ["0.00 EUR", "5.00 EUR", "10.00 EUR", "15.00 EUR", "20.00 EUR"]
    assert chart.summary == "Revenue per period: 2026-11 18.00 EUR"


@pytest.mark.parametrize("start, end", [
    (datetime(2026, 11, 24, 10, tzinfo=timezone.utc), datetime(2026, 12, 1, tzinfo=timezone.utc)),
    (datetime(2026, 12, 31, 23, 59, tzinfo=timezone.utc), datetime(2027, 1, 1, tzinfo=timezone.utc)),
    (datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 2, 1, tzinfo=timezone.utc)),
])
def test_a_period_closes_when_the_monthly_timer_sees_the_month_turned(start, end):
    assert month_end(start) == end
    assert month_has_turned(start, end) and not month_has_turned(start, end - timedelta(seconds=1))


def test_mail_retries_wait_longer_each_time_up_to_a_limit():
    delays = [retry_delay(n) for n in range(1, 12)]
    assert delays[0] == FIRST_RETRY_SECONDS and delays == sorted(delays) and delays[-1] == MAX_RETRY_SECONDS
