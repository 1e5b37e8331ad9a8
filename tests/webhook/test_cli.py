"""`bond-injector preview` and `bond-injector serve` as a user runs them (real processes)."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.poll import poll
from tests.rigs.cluster_procs import free_port
from tests.webhook.builders import EXAMPLES
from tests.webhook.live import client_context
from tests.webhook.pki import CA
from tests.webhook.reviews import review

CLI = [sys.executable, "-m", "webhook"]
PROFILES, NADS = str(EXAMPLES / "profiles.yaml"), str(EXAMPLES / "nads.yaml")


def _preview(pod: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [*CLI, "preview", str(pod), "--profiles", PROFILES, "--nads", NADS, *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def test_preview_of_the_seed_pod() -> None:
    result = _preview(EXAMPLES / "seed-pod.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    pod = yaml.safe_load(result.stdout)
    networks = json.loads(pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"])
    assert [(n["name"], n["interface"]) for n in networks] == [
        ("sriov-pf-a", "net1"),
        ("sriov-pf-b", "net2"),
        ("bond-net", "bond0"),
    ]
    one_each = {"intel.com/sriov_pf_a": "1", "intel.com/sriov_pf_b": "1"}
    (container,) = pod["spec"]["containers"]
    assert container["resources"] == {"requests": one_each, "limits": one_each}
    assert container["command"] == ["/bin/sh", "-c", "sleep 60m"], "the rest of the pod is kept"


def test_preview_denial_goes_to_stderr_with_exit_1(tmp_path: Path) -> None:
    pod = yaml.safe_load((EXAMPLES / "seed-pod.yaml").read_text())
    pod["metadata"]["annotations"] = {"k8s.v1.cni.cncf.io/networks": "macvlan@net2"}
    path = tmp_path / "pod.yaml"
    path.write_text(yaml.safe_dump(pod))
    result = _preview(path, "--namespace", "team")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(
        "denied: pod team/test-pod: annotation k8s.v1.cni.cncf.io/networks entry 0 "
        "(macvlan@net2) already uses interface net2"
    )


def test_preview_warnings_go_to_stderr(tmp_path: Path) -> None:
    pod = yaml.safe_load((EXAMPLES / "seed-pod.yaml").read_text())
    pod["metadata"]["annotations"] = {"k8s.v1.cni.cncf.io/networks": "ghost@eth1"}
    path = tmp_path / "pod.yaml"
    path.write_text(yaml.safe_dump(pod))
    result = _preview(path)
    assert result.returncode == 0
    assert "warning: pod default/test-pod: annotation entry 0 names " in result.stderr
    assert yaml.safe_load(result.stdout)["kind"] == "Pod"


def test_preview_of_bad_input_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text("kind: Service\n")
    result = _preview(path)
    assert (result.returncode, result.stderr.strip()) == (
        2,
        f"bond-injector preview: {path} is not a Pod manifest",
    )


def _ready(port: int, ctx: ssl.SSLContext) -> bool:
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            return tls.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _serve(tmp_path: Path, *extra: str) -> tuple[list[str], ssl.SSLContext, int]:
    """`serve` on a free loopback port with a fresh CA's certificate: its argv, a client context
    trusting that CA, and the port."""
    ca = CA("ca")
    cert, key = ca.issue("localhost").write(tmp_path, "tls")
    ctx = client_context(ca.write(tmp_path / "ca.crt"))
    port = free_port()
    args = [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--tls-cert", str(cert),
            "--tls-key", str(key), "--profiles", PROFILES, "--nads", NADS, *extra]  # fmt: skip
    return args, ctx, port


def _listener_inodes(port: int) -> set[str]:
    """The socket inodes listening on `port` (/proc/net/tcp and tcp6: state 0A is LISTEN)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(fields[9])
    return inodes


def _workers_on(pid: int, port: int) -> int:
    """How many child processes of `pid` hold the socket listening on `port`: the workers of
    `--workers N` (what the kernel hands connections to), seen through /proc, not a log line."""
    wanted = {f"socket:[{inode}]" for inode in _listener_inodes(port)}
    count = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            held = {os.readlink(fd) for fd in (proc / "fd").iterdir()} if parent == pid else set()
        except OSError:  # gone meanwhile
            continue
        count += bool(wanted & held)
    return count


def _unread_by_server(port: int, client_port: int) -> int | None:
    """Bytes waiting in the receive queue of the server's side of our connection (/proc/net/tcp),
    or None while the kernel lists no such socket."""
    local, remote = f"0100007F:{port:04X}", f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            return int(fields[4].split(":")[1], 16)
    return None


def test_serve_drains_an_in_flight_request_on_sigterm(tmp_path: Path) -> None:
    args, ctx, port = _serve(tmp_path)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        poll(lambda: _ready(port, ctx) or proc.poll() is not None, timeout=30, what="serve")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        body = json.dumps(review(yaml.safe_load((EXAMPLES / "seed-pod.yaml").read_text()))).encode()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            head = (
                "POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n"
            )
            tls.sendall(head.encode() + body[:100])
            # In flight once the server has read it: before that, SIGTERM finds an idle
            # connection, which a graceful shutdown rightly closes at once.
            client_port = tls.getsockname()[1]
            poll(
                lambda: _unread_by_server(port, client_port) == 0,
                timeout=30,
                what="the server to read the request's head",
            )
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(timeout=0.5)  # it waits for us
            tls.sendall(body[100:])
            reply = b""
            while chunk := tls.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200")
        assert b'"allowed":true' in reply
        assert proc.wait(timeout=30) == 0
        _, stderr = proc.communicate(timeout=5)
        lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
        assert [line["outcome"] for line in lines] == ["patched"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_refuses_a_mismatched_pair(tmp_path: Path) -> None:
    ca = CA("ca")
    cert, _ = ca.issue("localhost").write(tmp_path / "a", "tls")
    _, key = ca.issue("localhost").write(tmp_path / "b", "tls")
    args = [
        *CLI,
        "serve",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--profiles",
        PROFILES,
        "--nads",
        NADS,
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(f"bond-injector serve: cannot use {cert} with {key}")


def test_certs_subcommand_is_handed_to_the_certs_cli() -> None:
    result = subprocess.run(
        [*CLI, "certs", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "generate" in result.stdout
    top = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert "certs" in top.stdout and "preview" in top.stdout and "serve" in top.stdout


def test_serve_with_two_workers(tmp_path: Path) -> None:
    args, ctx, port = _serve(tmp_path, "--workers", "2")
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        poll(lambda: _workers_on(proc.pid, port) == 2, 60, "two workers on the listener")
        poll(lambda: _ready(port, ctx) or proc.poll() is not None, timeout=60, what="serve")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# Guards the supervisor's memory (~26 MiB, not ~44: webhook/server.py): of `--workers N` it binds,
# spawns and watches, so it imports none of what only the workers need, our modules (the app, the
# NAD sources, the HTTP protocol, the loop) and the dependencies we keep out of it on purpose.
SERVING_MODULES = (
    "webhook.app", "webhook.endpoint", "webhook.mutation", "webhook.nads", "webhook.nadcache",
    "webhook.kubeapi", "webhook.headertimeout", "webhook.eventloop", "starlette",
    "prometheus_client", "cryptography", "yaml", "jsonpatch", "orjson", "httptools",
)  # fmt: skip


def test_two_workers_supervisor_does_not_import_the_app(tmp_path: Path) -> None:
    """The supervisor's own modules, written at its exit (atexit: spawned workers do not inherit
    it), while its two workers served an admission."""
    args, ctx, port = _serve(tmp_path, "--workers", "2")
    modules = tmp_path / "supervisor-modules.json"
    dump = (
        "import atexit, json, pathlib, runpy, sys\n"
        f"out = pathlib.Path({str(modules)!r})\n"
        "atexit.register(lambda: out.write_text(json.dumps(sorted(sys.modules))))\n"
        f"sys.argv = ['bond-injector', *{args[3:]!r}]\n"
        "runpy.run_module('webhook', run_name='__main__')\n"
    )
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-c", dump], stdout=out, stderr=subprocess.STDOUT)
    try:
        poll(lambda: _workers_on(proc.pid, port) == 2, 60, "two workers on the listener")
        poll(lambda: _ready(port, ctx) or proc.poll() is not None, timeout=60, what="serve")
        body = json.dumps(review(yaml.safe_load((EXAMPLES / "seed-pod.yaml").read_text())))
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(
                "POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n{body}".encode()
            )
            reply = b""
            while chunk := tls.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200") and b'"allowed":true' in reply
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    held = json.loads(modules.read_text())
    assert "webhook.server" in held  # the dump is of our serve command, run to its end
    leaked = [m for m in held if any(m == s or m.startswith(f"{s}.") for s in SERVING_MODULES)]
    assert leaked == [], f"the supervisor imported serving modules: {leaked}"
