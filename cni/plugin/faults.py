"""Test-only fault points; build.sh leaves this module out of the shipped bin/bond.

With BOND_CNI_TEST_KILL_AFTER set to a step's name (cni.plugin.commands' _step calls in
cmd_add) in the call's environment, ADD SIGKILLs its own process right after that step, as an OOM
kill or a crash there would, to show that DEL then cleans up (tests/cni/test_helper_kernel.py). A
caller that could set it would stop the rollback, so no shipped build may have it: commands
falls back to a no-op when this module cannot be imported.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

KILL_AFTER = "BOND_CNI_TEST_KILL_AFTER"


def after_step(env: Mapping[str, str], name: str) -> None:
    if env.get(KILL_AFTER) == name:
        os.kill(os.getpid(), signal.SIGKILL)
