"""The one piece of logic in bench/cni.py: reading the VM script's `time` lines."""

from __future__ import annotations

from pathlib import Path

from bench.cni import PLUGINS, _parse


def test_time_lines_are_grouped_by_plugin_and_command() -> None:
    output = "\n".join(
        [
            "bench: state on overlayfs",
            "time helper ADD 330600",
            "time bond ADD 3134900",
            "time helper ADD 331000",
            "time bondcni DEL 285700",
            "time helper",  # cut short by the console: ignored
            "vm: exit 0",
        ]
    )
    assert _parse(output) == {
        ("helper", "ADD"): [330600.0, 331000.0],
        ("bond", "ADD"): [3134900.0],
        ("bondcni", "DEL"): [285700.0],
    }


def test_the_vm_script_names_every_plugin_the_report_reads() -> None:
    script = (Path(__file__).resolve().parents[2] / "bench" / "cni_vm.sh").read_text()
    for plugin in PLUGINS:
        assert f"round {plugin} " in script and f"version {plugin} " in script
