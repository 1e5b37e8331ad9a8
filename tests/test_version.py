"""The version is pyproject.toml's, as installed; each package reports that one."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@pytest.mark.parametrize("package", ["webhook", "cni", "certs"])
def test_version_comes_from_the_package_metadata(package: str) -> None:
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    assert importlib.import_module(package).__version__ == declared


def test_other_attributes_are_still_missing() -> None:
    with pytest.raises(AttributeError, match="module 'cni' has no attribute 'version'"):
        importlib.import_module("cni").version  # noqa: B018
