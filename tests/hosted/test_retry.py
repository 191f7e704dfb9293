"""The one retry policy: bounded, doubling, jittered delays; Retry-After within the cap; tenacity's loop."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmbg_hosted.retry import async_retrying, delay, retrying


@given(attempt=st.integers(1, 40), base=st.floats(0.001, 10), cap=st.floats(0.001, 60))
def test_delay_is_bounded_doubles_and_keeps_half_its_ceiling(attempt, base, cap):
    ceiling = min(cap, base * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay(attempt, base, cap) <= ceiling


def test_retry_after_wins_within_the_cap():
    assert delay(1, 0.01, 5.0, "2") == 2.0 and delay(1, 0.01, 5.0, "3600") == 5.0
    assert 0.005 <= delay(1, 0.01, 5.0, "soon") <= 0.01  # not a number: ignored


def test_errors_the_predicate_accepts_are_retried_and_others_raised_at_once():
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "up"

    assert retrying(5, 0.001, 0.002, on_error=lambda e: isinstance(e, ConnectionError))(flaky) == "up"
    assert len(calls) == 3
    with pytest.raises(KeyError):
        retrying(5, 0.001, 0.002, on_error=lambda e: isinstance(e, ConnectionError))(lambda: {}["x"])


def test_the_last_error_is_raised_after_the_last_attempt():
    calls = []

    def down() -> None:
        calls.append(1)
        raise ConnectionError(f"try {len(calls)}")

    with pytest.raises(ConnectionError, match="try 3"):
        retrying(3, 0.001, 0.002, on_error=lambda e: True)(down)


def test_results_can_ask_for_a_retry_and_the_last_one_is_returned():
    answers = iter([503, 503, 503])

    async def ask() -> int:
        return next(answers)

    result = asyncio.run(async_retrying(3, 0.001, 0.002, on_result=lambda r: r >= 500)(ask))
    assert result == 503
