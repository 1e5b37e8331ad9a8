"""NIC diversity decisions on sysfs trees built in a temp dir.

No SR-IOV hardware exists in our VMs: these trees stand in for it, laid out as the kernel does
(/sys/bus/pci/devices/<vf>/physfn -> PF, <pf>/virtfnN -> VF, <pf>/net/<netdev>).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cni.core import diversity
from cni.core.diversity import SlaveDevice


def _pf(sysfs: Path, pf: str, netdev: str, vfs: list[str]) -> None:
    devices = sysfs / "bus" / "pci" / "devices"
    (devices / pf / "net" / netdev).mkdir(parents=True)
    for n, vf in enumerate(vfs):
        (devices / vf).mkdir(parents=True)
        (devices / vf / "physfn").symlink_to(f"../{pf}")
        (devices / pf / f"virtfn{n}").symlink_to(f"../{vf}")


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    # NIC A: a dual-port card (PFs .0 and .1); NIC B: another card.
    _pf(tmp_path, "0000:3b:00.0", "ens1f0", ["0000:3b:02.0", "0000:3b:02.1"])
    _pf(tmp_path, "0000:3b:00.1", "ens1f1", ["0000:3b:0a.0"])
    _pf(tmp_path, "0000:5e:00.0", "ens2f0", ["0000:5e:02.0"])
    return tmp_path


def test_resolve_vf(sysfs: Path) -> None:
    dev = diversity.resolve(sysfs, "net1", "pci", "0000:3b:02.1")
    assert dev == SlaveDevice("net1", "0000:3b:02.1", "0000:3b:00.0", 1, "ens1f0")
    assert dev.nic == "0000:3b:00" and dev.is_vf


def test_resolve_pf_itself(sysfs: Path) -> None:
    dev = diversity.resolve(sysfs, "ens2f0", "pci", "0000:5e:00.0")
    assert (dev.pf, dev.vf_index, dev.pf_netdev) == ("0000:5e:00.0", None, "ens2f0")


@pytest.mark.parametrize(("bus", "parent"), [(None, None), ("pci", "0000:99:00.0"), ("usb", "1-1")])
def test_unknown_parents_are_unknown_not_errors(
    sysfs: Path, bus: str | None, parent: str | None
) -> None:
    dev = diversity.resolve(sysfs, "net1", bus, parent)
    assert dev == SlaveDevice("net1")
    assert diversity.unknown([dev]) == ["net1"]


@pytest.mark.parametrize(
    ("vf1", "vf2", "expected"),
    [
        ("0000:3b:02.0", "0000:3b:02.1", "share PF 0000:3b:00.0"),
        ("0000:3b:02.0", "0000:3b:0a.0", "same NIC 0000:3b:00"),
        ("0000:3b:02.0", "0000:5e:02.0", None),
        ("0000:3b:0a.0", "0000:5e:02.0", None),
    ],
)
def test_decision(sysfs: Path, vf1: str, vf2: str, expected: str | None) -> None:
    devices = [
        diversity.resolve(sysfs, "net1", "pci", vf1),
        diversity.resolve(sysfs, "net2", "pci", vf2),
    ]
    found = diversity.problems(devices)
    if expected is None:
        assert found == []
    else:
        assert (
            len(found) == 1 and expected in found[0] and "net1" in found[0] and "fix:" in found[0]
        )


def test_unknown_slave_does_not_count_as_shared(sysfs: Path) -> None:
    devices = [diversity.resolve(sysfs, "net1", "pci", "0000:3b:02.0"), SlaveDevice("net2")]
    assert diversity.problems(devices) == []
