"""The one way tests and rigs wait: call a condition until it holds or a deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_FIRST, _MAX = 0.01, 0.25  # seconds between calls: quick at first, then gentle on a busy machine


def poll(
    condition: Callable[[], T | None],
    timeout: float = 10.0,
    what: str = "condition",
    *,
    interval: float | None = None,
    error: Callable[[str], Exception] = TimeoutError,
) -> T:
    """The first true value `condition` returns; `error` naming `what` after `timeout` seconds.

    Without `interval` the pause between calls grows from 10 ms to 250 ms; give one for a
    condition that is costly to ask (a VM, a kubectl).
    """
    deadline = time.monotonic() + timeout
    pause = _FIRST if interval is None else interval
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(pause)
        if interval is None:
            pause = min(pause * 1.5, _MAX)
