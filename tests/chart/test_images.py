"""The two images' contents, built the way their Dockerfiles build them (see tests/chart/images.py:
no Docker engine here), then used as the chart uses them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.chart.images import REPO, Built, apt_packages, build, missing_on_host, parse
from tests.chart.render import one, render
from tests.poll import poll

_ENV = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}


def test_the_replay_stands_in_the_hosts_packages_for_the_apt_line() -> None:
    """The build stage's apt-get line is not replayed; the host must hold what it installs (the
    static CNI client needs gcc and libc.a, PyInstaller needs objdump)."""
    build_stage = parse(REPO / "Dockerfile.cni")[0]
    runs = [args for instruction, args in build_stage.steps if instruction == "RUN"]
    assert [apt_packages(run) for run in runs] == [["binutils", "gcc", "libc6-dev"], []]
    assert missing_on_host(["binutils", "gcc", "libc6-dev"]) == []
    assert missing_on_host(["gcc", "bond-injector-no-such-package"]) == [
        "bond-injector-no-such-package"
    ]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    # Both at once: one mostly waits on pip downloads while the other runs PyInstaller.
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(
                build, REPO / f"Dockerfile.{name}", tmp_path_factory.mktemp(f"{name}-image")
            )
            for name in ("webhook", "cni")
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def webhook_image(images: dict[str, Built]) -> Built:
    return images["webhook"]


@pytest.fixture(scope="module")
def cni_image(images: dict[str, Built]) -> Built:
    return images["cni"]


def _run(*args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env={**_ENV, **env},
        cwd="/",  # not the repository: only what the image holds may be imported
        check=False,
        timeout=120,
    )


@pytest.mark.images
def test_webhook_image_runs_the_commands_the_chart_uses(
    webhook_image: Built, tmp_path: Path
) -> None:
    assert webhook_image.entrypoint == '["bond-injector"]'
    venv = webhook_image.rootfs / "opt" / "bond-injector"
    serve = _run(venv / "bin" / "bond-injector", "serve", "--help")
    assert serve.returncode == 0, serve.stderr
    assert "--tls-cert" in serve.stdout
    certs = _run(
        venv / "bin" / "bond-injector", "certs", "generate", "--out-dir", tmp_path, "--dns", "x"
    )
    assert certs.returncode == 0, certs.stderr
    assert (tmp_path / "tls.crt").is_file()
    # The helm test pod runs `python -c` with the standard library only.
    assert _run(venv / "bin" / "python", "-c", "import ssl, urllib.request").returncode == 0
    # Runtime dependencies only: the dev tools are not in the image.
    for module in ("pytest", "mypy", "PyInstaller"):
        assert _run(venv / "bin" / "python", "-c", f"import {module}").returncode != 0, module


@pytest.mark.images
def test_cni_image_installs_a_plugin_that_answers_version(cni_image: Built, tmp_path: Path) -> None:
    assert cni_image.entrypoint == '["/usr/local/bin/install-bond-cni"]'
    assert any("apt-get" in line for line in cni_image.skipped)
    host_bin = tmp_path / "opt-cni-bin"
    host_bin.mkdir()
    installer = cni_image.rootfs / "usr" / "local" / "bin" / "install-bond-cni"
    installed = _run(
        installer,
        BOND_CNI_SOURCE=str(cni_image.rootfs / "opt" / "bond-injector" / "bond"),
        CNI_BIN_DIR=str(host_bin),
        INSTALL_ONLY="1",
    )
    assert installed.returncode == 0, installed.stderr
    # Run it as a runtime would: from the host directory, with an empty environment but CNI's.
    version = subprocess.run(
        [str(host_bin / "bond")],
        input="{}",
        capture_output=True,
        text=True,
        env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"},
        cwd="/",
        check=False,
        timeout=60,
    )
    assert version.returncode == 0, version.stderr
    assert "1.1.0" in json.loads(version.stdout)["supportedVersions"]


def _installed(cni_image: Built, host_bin: Path) -> None:
    """The image's bundle installed into host_bin as the init container does (INSTALL_ONLY=1)."""
    host_bin.mkdir()
    installed = _run(
        cni_image.rootfs / "usr" / "local" / "bin" / "install-bond-cni",
        BOND_CNI_SOURCE=str(cni_image.rootfs / "opt" / "bond-injector" / "bond"),
        CNI_BIN_DIR=str(host_bin),
        INSTALL_ONLY="1",
    )
    assert installed.returncode == 0, installed.stderr


@pytest.mark.images
def test_the_charts_helper_commands_serve_and_probe_the_installed_plugin(
    cni_image: Built, tmp_path: Path
) -> None:
    """The helper container's command and probe, as the chart renders them for this host bin
    dir and socket, run against the image's bundle behind the installer's symlink (in the host's
    namespaces here, which the container's hostPath mounts reproduce at the same paths)."""
    host_bin, sock = tmp_path / "bin", tmp_path / "run" / "helper.sock"
    _installed(cni_image, host_bin)
    sets = (f"cniInstaller.hostBinDir={host_bin}", "cniInstaller.helper.enabled=true")
    (helper,) = one(render(sets=sets), "DaemonSet")["spec"]["template"]["spec"]["containers"]
    # The container runs the node's copy at its node path (the chart mounts it there).
    serve = list(helper["command"])
    probe = list(helper["readinessProbe"]["exec"]["command"])
    assert probe == helper["livenessProbe"]["exec"]["command"]
    # The node's socket, which the client asks by default, moved into this test's own directory
    # (the runtime-style call below names it with BOND_CNI_HELPER_SOCKET).
    for command in (serve, probe):
        assert command[-2:] == ["--socket", "/run/bond-cni/helper.sock"]
        command[-1] = str(sock)
    assert _run(*probe).returncode != 0  # no helper yet: the probe must say so

    log_path = tmp_path / "helper.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(serve, stdout=log, stderr=subprocess.STDOUT, env=_ENV, cwd="/")
    try:
        poll(
            lambda: proc.poll() is not None or _run(*probe).returncode == 0,
            timeout=60,
            what="the helper to answer the chart's probe",
        )
        assert proc.poll() is None, log_path.read_text()
        # The runtime's call, through the node's `bond`, reaches this helper on this socket.
        client = subprocess.Popen(
            [host_bin / "bond"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={
                "CNI_COMMAND": "VERSION",
                "PATH": "/usr/bin:/bin",
                "BOND_CNI_HELPER_SOCKET": str(sock),
            },
            cwd="/",
        )
        out, _ = client.communicate(b"{}", timeout=60)
        assert client.returncode == 0
        assert "1.1.0" in json.loads(out)["supportedVersions"]
        poll(
            lambda: f"pid {client.pid}: VERSION" in log_path.read_text(),
            timeout=10,
            what="the helper's log line for the client's VERSION",
        )
    finally:
        proc.send_signal(signal.SIGTERM)  # as the kubelet stops the container
        code = proc.wait(timeout=30)
    assert code == 0, log_path.read_text()
    assert not sock.exists()
    assert _run(*probe).returncode != 0
