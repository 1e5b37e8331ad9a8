"""Run helm on the chart and hand back the rendered objects, each with the template it came from."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "bond-injector"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
NAMESPACE = "bond-injector"
NODE_NAMESPACE = f"{NAMESPACE}-node"  # the node DaemonSet's own, by default
RELEASE = "bond-injector"


@dataclass(frozen=True)
class Rendered:
    source: str  # e.g. "templates/webhook-deployment.yaml"
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


def helm_binary() -> Path:
    cache = Path(os.environ.get("BOND_INJECTOR_CACHE", REPO / ".cache"))
    helm = cache / "bin" / "helm"
    if not os.access(helm, os.X_OK):
        pytest.fail(
            f"{helm} is missing; run `make deps` (tools/get-kubectl-helm.sh)", pytrace=False
        )
    return helm


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    home = REPO / ".cache" / "helm-home"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    result = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, env=env, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def template_args(
    *values: Path,
    sets: tuple[str, ...] = (),
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[str]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    for path in values:
        args += ["--values", str(path)]
    for item in sets:
        args += ["--set", item]
    return args


def render_text(*values: Path, sets: tuple[str, ...] = ()) -> str:
    return helm(*template_args(*values, sets=sets)).stdout


def render(*values: Path, sets: tuple[str, ...] = ()) -> list[Rendered]:
    return parse(render_text(*values, sets=sets))


def parse(text: str) -> list[Rendered]:
    out = []
    for chunk in text.split("\n---\n"):
        source = ""
        for line in chunk.splitlines():
            if line.startswith("# Source: "):
                source = line.removeprefix("# Source: ").split("/", 1)[1]
                break
        obj = yaml.safe_load(chunk)
        if obj:
            out.append(Rendered(source, obj))
    return out


def one(objects: list[Rendered], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [r.obj for r in objects if r.kind == kind and r.name.endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, found {len(found)}"
    return found[0]


def kinds(objects: list[Rendered]) -> list[str]:
    return sorted(r.kind for r in objects)
