"""The images `make images` builds with buildah (tools/images.py), run from the OCI archives the
node rig imports, the way the chart and the node use them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tarfile
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.utils import canonicalize_name

from tests.chart.images import Built, Container, build_images, container
from tests.chart.render import one, render
from tests.poll import poll

pytestmark = pytest.mark.images

REPO = Path(__file__).resolve().parents[2]
_ENV = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
_CNI_ENV = {"PATH": "/usr/bin:/bin"}  # what a runtime gives a plugin, besides CNI_*


@pytest.fixture(scope="module")
def built() -> Built:
    return build_images()


def test_every_image_is_an_oci_archive_named_for_import(built: Built) -> None:
    """What `ctr -n k8s.io images import` reads: an OCI index whose one manifest carries the
    image's full name (the name containerd gives it) and the digest images.json records."""
    assert set(built.images) == {"webhook", "cni", "pause", "bond-test"}
    for name, entry in built.images.items():
        assert entry["reference"] == f"localhost/bond-injector/{name}:{built.tag}"
        with tarfile.open(entry["archive"]) as tar:
            index_file = tar.extractfile("index.json")
            assert index_file is not None
            (manifest,) = json.load(index_file)["manifests"]
        assert manifest["annotations"]["org.opencontainers.image.ref.name"] == entry["reference"]
        assert manifest["digest"] == entry["digest"]


def test_a_second_build_with_nothing_changed_rebuilds_nothing(built: Built) -> None:
    archives = {name: Path(e["archive"]).stat().st_mtime_ns for name, e in built.images.items()}
    again = build_images()
    for name, entry in again.images.items():
        assert f"{entry['reference']} is up to date" in again.output
        assert Path(entry["archive"]).stat().st_mtime_ns == archives[name], name
        assert entry["digest"] == built.images[name]["digest"]
    assert "building" not in again.output


def test_the_chart_values_select_the_built_images(built: Built) -> None:
    """The values file `make images` writes puts every pod of the chart on the built images."""
    objects = render(Path(built.images["webhook"]["archive"]).parent / "chart-values.yaml")
    (webhook,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert webhook["image"] == built.images["webhook"]["reference"]
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    images = {c["image"] for c in pod.get("initContainers", []) + pod["containers"]}
    assert images == {built.images["cni"]["reference"]}


def test_webhook_image_runs_the_commands_the_chart_uses(built: Built, tmp_path: Path) -> None:
    config = built.config("webhook")
    assert config["Entrypoint"] == ["bond-injector"]
    assert config["User"] == "65532:65532"  # the chart's runAsUser: no root in the image
    with container(built, "webhook") as box:
        serve = box.run(["bond-injector", "serve", "--help"])
        assert serve.returncode == 0, serve.stderr
        assert "--tls-cert" in serve.stdout
        out = tmp_path / "certs"
        out.mkdir(mode=0o777)
        out.chmod(0o777)  # written by the image's user 65532
        certs = box.run(
            ["bond-injector", "certs", "generate", "--out-dir", "/certs", "--dns", "x"],
            volumes={out: "/certs"},
        )
        assert certs.returncode == 0, certs.stderr
        assert (out / "tls.crt").stat().st_uid == 65532
        # The helm test pod runs `python -c` with the standard library only.
        stdlib = box.run(["python", "-c", "import ssl, urllib.request"])
        assert stdlib.returncode == 0, stdlib.stderr
        # Runtime dependencies only: the dev tools are not in the image.
        for module in ("pytest", "mypy", "PyInstaller"):
            assert box.run(["python", "-c", f"import {module}"]).returncode != 0, module


def _locked_runtime() -> dict[str, str]:
    """requirements/runtime.txt (made from uv.lock by `make lock`) as {name: version}, the pins
    whose markers hold for the image's Python (CPython 3.11 on Linux, as this one)."""
    pins: dict[str, str] = {}
    for line in (REPO / "requirements" / "runtime.txt").read_text().splitlines():
        if not line or line[0] in " #":
            continue
        spec, _, marker = line.removesuffix("\\").partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        name, _, version = spec.strip().partition("==")
        pins[str(canonicalize_name(name))] = version
    return pins


def test_webhook_image_holds_exactly_the_locked_runtime(built: Built) -> None:
    """What a release ships is what CI tested: every distribution in the image's venv is pinned by
    the lock at that version, and nothing the lock pins is missing (the venv's own pip and
    setuptools, from the base's ensurepip, and our package aside)."""
    listing = (
        "import importlib.metadata as m, json;"
        " print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    with container(built, "webhook") as box:
        done = box.run(["/opt/bond-injector/bin/python", "-c", listing])
    assert done.returncode == 0, done.stderr
    installed = {str(canonicalize_name(n)): v for n, v in json.loads(done.stdout).items()}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert installed.pop("bond-injector") == project["version"]
    for bootstrapped in ("pip", "setuptools"):
        installed.pop(bootstrapped, None)
    assert installed == _locked_runtime()


def _install(box: Container, host_bin: Path) -> None:
    """The image's entrypoint as the chart's init container runs it (INSTALL_ONLY=1), with the
    host's CNI bin directory mounted where the chart mounts it."""
    host_bin.mkdir()
    (entrypoint,) = box.built.config("cni")["Entrypoint"]
    installed = box.run(
        [entrypoint], volumes={host_bin: "/host/opt/cni/bin"}, env={"INSTALL_ONLY": "1"}
    )
    assert installed.returncode == 0, installed.stderr
    assert "installed bundle" in installed.stderr


def test_cni_image_installs_a_plugin_that_answers_version(built: Built, tmp_path: Path) -> None:
    assert built.config("cni")["Entrypoint"] == ["/usr/local/bin/install-bond-cni"]
    host_bin = tmp_path / "opt-cni-bin"
    with container(built, "cni") as box:
        _install(box, host_bin)
        # Inside the image (its own libc, nothing from the build host)...
        inside = box.run(
            ["/opt/bond-injector/bond/bond"],
            env={"CNI_COMMAND": "VERSION", "BOND_CNI_HELPER": "off"},
            stdin="{}",
        )
        assert inside.returncode == 0, inside.stderr
        assert "1.1.0" in json.loads(inside.stdout)["supportedVersions"]
        # ...and the copy the installer put on the "node".
    version = subprocess.run(
        [host_bin / "bond"],
        input="{}",
        capture_output=True,
        text=True,
        env={"CNI_COMMAND": "VERSION", **_CNI_ENV},
        cwd="/",
        check=False,
        timeout=60,
    )
    assert version.returncode == 0, version.stderr
    assert "1.1.0" in json.loads(version.stdout)["supportedVersions"]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env=_ENV,
        cwd="/",
        check=False,
        timeout=120,
    )


def test_the_charts_helper_commands_serve_and_probe_the_installed_plugin(
    built: Built, tmp_path: Path
) -> None:
    """The helper container's command and probe, as the chart renders them for this host bin
    dir and socket, run against the bundle the image's installer put there (in the host's
    namespaces here, which the container's hostPath mounts reproduce at the same paths)."""
    host_bin, sock = tmp_path / "bin", tmp_path / "run" / "helper.sock"
    with container(built, "cni") as box:
        _install(box, host_bin)
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
            env={"CNI_COMMAND": "VERSION", **_CNI_ENV, "BOND_CNI_HELPER_SOCKET": str(sock)},
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


def _children(pid: int) -> set[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(c) for c in children}


def _state(pid: int) -> str:
    """The process state letter (Z: a zombie nobody reaped), or '' once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def test_pause_is_a_static_pid_1_that_reaps_orphans_and_stops_on_sigterm(built: Built) -> None:
    """containerd's sandbox process: the image's /pause alone (static, no loader), run as PID 1
    of a fresh PID namespace, inherits an orphan, reaps it when it dies, and exits 0 on SIGTERM."""
    config = built.config("pause")
    assert config["Entrypoint"] == ["/pause"]
    with container(built, "pause") as box:
        assert sorted(p.name for p in box.rootfs.iterdir()) == ["pause"]
        pause = box.rootfs / "pause"
        headers = subprocess.run(
            ["readelf", "--program-headers", pause], capture_output=True, text=True, check=True
        ).stdout
        assert "INTERP" not in headers  # no dynamic loader: runs from an empty image
        sandbox = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", pause])
        try:
            poll(lambda: len(_children(sandbox.pid)) == 1, timeout=10, what="pause to start")
            (pid1,) = _children(sandbox.pid)
            # A process that leaves a child behind in the sandbox's PID namespace: the child
            # is re-parented to PID 1, pause.
            subprocess.run(
                ["nsenter", "--target", str(pid1), "--pid", "--", "sh", "-c", "sleep 600 &"],
                check=True,
                timeout=30,
            )
            poll(lambda: len(_children(pid1)) == 1, timeout=10, what="the orphan to reach pause")
            (orphan,) = _children(pid1)
            os.kill(orphan, signal.SIGKILL)
            poll(lambda: _state(orphan) == "", timeout=10, what="pause to reap the orphan")
            os.kill(pid1, signal.SIGTERM)
            assert sandbox.wait(timeout=10) == 0
        finally:
            if sandbox.poll() is None:
                sandbox.kill()
                sandbox.wait()


def test_bond_test_image_has_ip_and_ping_and_stops_on_sigterm(built: Built) -> None:
    with container(built, "bond-test") as box:
        shown = box.run(["ip", "-json", "address", "show", "lo"])
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)[0]["ifname"] == "lo"
        # ping holds CAP_NET_RAW as a file capability: a runtime's default set (containerd's
        # has NET_RAW) lets it raise it; buildah's does not, so add it as the pod would have it.
        ping = box.run(["ping", "-c", "1", "-W", "10", "127.0.0.1"], caps=["CAP_NET_RAW"])
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert "1 received" in ping.stdout
        # Its command as a pod's PID 1 runs it: deleting the pod (SIGTERM) ends it at once.
        cmd = built.config("bond-test")["Cmd"]
        workload = subprocess.Popen(
            ["/usr/sbin/chroot", box.rootfs, *cmd], env={"PATH": "/usr/bin:/bin"}
        )
        sleeping: set[int] = set()

        def started() -> bool:
            sleeping.update(_children(workload.pid))
            return bool(sleeping)

        try:
            poll(started, timeout=10, what="the workload to start sleeping")
            workload.send_signal(signal.SIGTERM)
            assert workload.wait(timeout=10) == 0
        finally:
            if workload.poll() is None:
                workload.kill()
                workload.wait()
            # In a pod the PID namespace ends with its PID 1; here the sleep is left over.
            for pid in sleeping:
                if _state(pid) not in ("", "Z"):
                    os.kill(pid, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str, accept: str = "") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(  # noqa: S310 (the test registry, on loopback)
        url, headers={"Accept": accept} if accept else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), b""
    except OSError:
        return 0, {}, b""


_MANIFESTS = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def test_push_puts_every_image_in_the_users_registry_and_pins_the_chart_to_it(
    built: Built, tmp_path: Path
) -> None:
    """`make images REGISTRY=... PUSH=1` against a real registry (Debian's docker-registry, the
    distribution registry, on loopback over plain HTTP): every image's manifest is served under
    REGISTRY/<name>:<tag> with the digest the build recorded, every blob it names is there, and
    the chart values it writes render the chart's pods on exactly those digests."""
    port = _free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'data'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "registry.log").open("wb") as log:
        registry = subprocess.Popen(
            ["docker-registry", "serve", config], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        poll(lambda: _get(f"{base}/v2/")[0] == 200, timeout=30, what="the registry to answer")
        pushed = build_images(
            "--registry", f"127.0.0.1:{port}/team", "--push", "--tls-verify", "false"
        )
        for name, entry in pushed.images.items():
            ref = f"127.0.0.1:{port}/team/{name}:{built.tag}"
            assert entry["pushed"]["reference"] == ref
            status, headers, body = _get(f"{base}/v2/team/{name}/manifests/{built.tag}", _MANIFESTS)
            assert status == 200, name
            assert headers["Docker-Content-Digest"] == entry["pushed"]["digest"]
            manifest = json.loads(body)
            for blob in [manifest["config"], *manifest["layers"]]:
                assert _get(f"{base}/v2/team/{name}/blobs/{blob['digest']}")[0] == 200
        values = Path(pushed.images["webhook"]["archive"]).parent / "chart-values.yaml"
        objects = render(values)
        (webhook,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
        digest = pushed.images["webhook"]["pushed"]["digest"]
        assert webhook["image"] == f"127.0.0.1:{port}/team/webhook@{digest}"
        pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
        digest = pushed.images["cni"]["pushed"]["digest"]
        images = {c["image"] for c in pod.get("initContainers", []) + pod["containers"]}
        assert images == {f"127.0.0.1:{port}/team/cni@{digest}"}
    finally:
        registry.terminate()
        registry.wait(timeout=30)
        for name in built.images:  # drop this registry's names from the build's storage
            built.buildah("rmi", f"127.0.0.1:{port}/team/{name}:{built.tag}")
        build_images()  # the local images' chart values again, for whoever runs the node next
