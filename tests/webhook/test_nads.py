from __future__ import annotations

from pathlib import Path

import pytest

from tests.webhook.builders import EXAMPLES
from webhook.nads import NadError, NetworkAttachmentDefinition, load_nad_file

NAD = """
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  name: {name}
  namespace: {ns}
  annotations: {{k8s.v1.cni.cncf.io/resourceName: {res}}}
spec: {{config: '{{"type":"sriov"}}'}}
"""


def test_example_file() -> None:
    nads = load_nad_file(EXAMPLES / "nads.yaml")
    assert len(nads) == 3
    a = nads.cached("default", "sriov-pf-a")
    assert a is not None and a.resource_name == "intel.com/sriov_pf_a"
    bond = nads.cached("default", "bond-net")
    assert bond is not None and bond.resource_name is None and '"type": "bond"' in bond.config


def test_list_form_and_other_kinds(tmp_path: Path) -> None:
    items = NAD.format(name="x", ns="team", res="p/x").replace("\n", "\n    ")
    path = tmp_path / "list.yaml"
    path.write_text(
        f"apiVersion: v1\nkind: List\nitems:\n  - {items.strip()}\n"
        "---\nkind: ConfigMap\nmetadata: {name: c}\n"
    )
    nads = load_nad_file(path)
    assert len(nads) == 1
    x = nads.cached("team", "x")
    assert x is not None and x.resource_name == "p/x"


def test_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("kind: NetworkAttachmentDefinition\nmetadata: {}\n")
    with pytest.raises(
        NadError, match=r"bad.yaml: a NetworkAttachmentDefinition has no metadata.name"
    ):
        load_nad_file(path)
    path.write_text("a: [")
    with pytest.raises(NadError, match="not valid YAML"):
        load_nad_file(path)


def test_blank_resource_name_is_none() -> None:
    for value in ("", "  ", None):
        obj = {"metadata": {"name": "x", "annotations": {"k8s.v1.cni.cncf.io/resourceName": value}}}
        assert NetworkAttachmentDefinition.from_object(obj).resource_name is None
