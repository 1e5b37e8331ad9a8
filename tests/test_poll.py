"""The shared poll helper: the first true value, or the caller's error naming what it waited for."""

from __future__ import annotations

import itertools

import pytest

from tests.poll import poll


def test_returns_the_first_true_value() -> None:
    calls = itertools.count()
    assert poll(lambda: next(calls) >= 3 and "ready", what="the third call") == "ready"


class _RigError(RuntimeError):
    pass


def test_times_out_with_the_callers_error() -> None:
    with pytest.raises(_RigError, match=r"^timed out after 0.05 s waiting for nothing$"):
        poll(lambda: None, 0.05, "nothing", error=_RigError)
    with pytest.raises(TimeoutError, match="waiting for nothing"):
        poll(lambda: False, 0.05, "nothing", interval=0.01)
