"""Shared helpers for the bond CNI tests."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cni.core.config import LOG_DIR
from cni.core.spec import SUPPORTED_VERSIONS

ALL_VERSIONS = SUPPORTED_VERSIONS

# The bond-cni README's own NetworkAttachmentDefinition config.
README_CONFIG: dict[str, Any] = {
    "type": "bond",
    "cniVersion": "0.3.1",
    "name": "bond-net1",
    "mode": "active-backup",
    "failOverMac": 1,
    "linksInContainer": True,
    "miimon": "100",
    "mtu": 1500,
    "links": [{"name": "net1"}, {"name": "net2"}],
    "ipam": {
        "type": "host-local",
        "subnet": "10.56.217.0/24",
        "routes": [{"dst": "0.0.0.0/0"}],
        "gateway": "10.56.217.1",
    },
}


def bond_config(version: str = "1.1.0", **fields: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": version,
        "name": "bondnet",
        "type": "bond",
        "links": [{"name": "net1"}, {"name": "net2"}],
    }
    conf.update(fields)
    return {k: v for k, v in conf.items() if v is not None}


def require(path: Path, fix: str) -> None:
    """Fail, never skip, when a part that `make test` provides is missing: a skip would hide a
    broken build or install step."""
    if not path.exists():
        pytest.fail(f"{path} is missing: {fix}", pytrace=False)


@pytest.fixture
def node_log_file(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A file name in the one folder `logFile` may name (the node's /var/log/bond-cni), unique to
    this test and removed after it; the folder is left, as the plugin leaves it."""
    path = Path(LOG_DIR) / f"test-{os.getpid()}-{request.node.name[:40]}.log"
    path = path.with_name(re.sub(r"[^A-Za-z0-9_.\-]", "_", path.name))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
