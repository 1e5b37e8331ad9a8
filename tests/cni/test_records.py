"""Attachment records: the format, the attachmentsDir field, and the file work (real files)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cni.core import config, records
from cni.core.errors import INVALID_CONFIG, CNIError
from cni.plugin import records as files
from tests.cni.conftest import bond_config

MONITOR = records.Monitor(mode="active-backup", miimon=100, arp_interval=0, updelay=0, downdelay=0)


def attachment(
    container: str = "c1", bond: str = "bond0", network: str = "bondnet"
) -> records.Attachment:
    return records.Attachment(
        network=network,
        container_id=container,
        netns="/run/netns/cni-1",
        bond=bond,
        slaves=("net1", "net2"),
        pod_namespace="team-a",
        pod_name="web-0",
        pod_uid="0a1b",
        monitor=MONITOR,
    )


def test_a_record_round_trips() -> None:
    record = attachment()
    assert records.decode(records.encode(record), "x") == record
    assert record.key == "c1_bond0.json"
    assert record.pod == "team-a/web-0"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"{", "not JSON"),
        (b'{"format": 2}', "format 1"),
        (b'{"format": 1, "slaves": "net1"}', "'slaves'"),
        (b'{"format": 1, "slaves": ["net1"], "monitor": []}', "'monitor'"),
    ],
)
def test_a_bad_record_is_refused_naming_the_file(text: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        records.decode(text, "/x/c1_bond0.json")
    assert "/x/c1_bond0.json" in str(caught.value)


def test_pod_from_cni_args() -> None:
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;K8S_POD_UID=0a1b"
    assert records.pod_of(args) == ("team-a", "web-0", "0a1b")
    assert records.pod_of("") == ("", "", "")


def test_attachments_dir_defaults_and_is_configurable() -> None:
    assert config.parse(bond_config()).attachments_dir == records.DEFAULT_DIR
    conf = config.parse(bond_config(attachmentsDir="/run/bond-cni/records"))
    assert conf.attachments_dir == "/run/bond-cni/records"


@pytest.mark.parametrize(
    "value", ["relative", "/etc/cron.d", "/var/lib/bond-cni/../../etc", "/run/bond-cni//x", 7, ""]
)
def test_attachments_dir_outside_the_plugins_folders_is_error_7(value: object) -> None:
    with pytest.raises(CNIError) as caught:
        config.parse(bond_config(attachmentsDir=value))
    assert caught.value.code == INVALID_CONFIG
    assert "'attachmentsDir'" in caught.value.msg
    assert "/var/lib/bond-cni" in caught.value.msg


def test_save_writes_whole_records_and_remove_forgets_them(tmp_path: Path) -> None:
    folder = tmp_path / "attachments"
    path = files.save(str(folder), attachment())
    assert path == str(folder / "c1_bond0.json")
    assert records.decode(Path(path).read_bytes(), path) == attachment()
    assert os.listdir(folder) == ["c1_bond0.json"]  # no temp file left behind
    files.save(str(folder), attachment())  # a repeated ADD replaces it
    assert files.remove(str(folder), "c1", "bond0") is True
    assert files.remove(str(folder), "c1", "bond0") is False  # DEL twice is fine
    assert os.listdir(folder) == []


def test_a_failed_write_leaves_no_temp_file(tmp_path: Path) -> None:
    folder = tmp_path / "attachments"
    folder.mkdir()
    (folder / "c1_bond0.json").mkdir()  # the rename cannot replace a folder
    with pytest.raises(OSError):
        files.save(str(folder), attachment())
    assert os.listdir(folder) == ["c1_bond0.json"]


def test_gc_removes_only_this_networks_stale_records(tmp_path: Path) -> None:
    folder = str(tmp_path)
    for record in (
        attachment("live"),
        attachment("gone"),
        attachment("other", network="othernet"),
    ):
        files.save(folder, record)
    (tmp_path / "notes.json").write_text("not a record")
    removed = files.gc(folder, "bondnet", [{"containerID": "live", "ifname": "bond0"}])
    assert removed == ["gone_bond0.json"]
    assert sorted(os.listdir(folder)) == ["live_bond0.json", "notes.json", "other_bond0.json"]
    assert files.gc(str(tmp_path / "missing"), "bondnet", []) == []


def test_the_plugin_path_imports_nothing_of_the_agent() -> None:
    """Records cost the in-process plugin one small module: no agent, metrics or HTTP stack."""
    # Guards the plugin's start-up time: it loads none of our agent (cni.agent) nor the
    # dependencies only the agent uses (prometheus_client, http, ssl), which it avoids on purpose.
    code = (
        "import sys; import cni.plugin.dispatch, cni.core.config, cni.plugin.commands;"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('prometheus_client', 'http', 'ssl') or m.startswith('cni.agent'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == []
