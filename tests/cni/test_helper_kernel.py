"""The helper's fault matrix against a real kernel (issue #10 items 4 and 5), in one VM run.

Real parts throughout: `bin/bond serve` and the static client `bin/bond`, kernel bonds in fresh pod
namespaces (tests/rigs/netns.py), Debian's host-local for leases. Two stand-ins, each for a fault
that cannot be had on demand: `gated-host-local` (helper_rig.gated_ipam), the real host-local
that then waits at a FIFO, so a request hangs where a test wants it; and the plugin's test-only
kill point (cni.plugin.faults.KILL_AFTER), which SIGKILLs the plugin right after a named step
of ADD: only the helper run from this source tree has it (the built bin/bond leaves it out, as
test_the_shipped_helper_ignores_the_kill_point shows). Every kill here is a real SIGKILL, every
timeout the helper's own SIGALRM.

One VM per pytest run: select this module alone (`pytest -m kernel tests/cni/test_helper_kernel.py`)
to run the matrix; it also runs with the rest of the kernel tier.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cni.helper import wire
from cni.plugin.faults import KILL_AFTER
from tests.cni.conftest import bond_config, require
from tests.cni.helper_rig import (
    BOND,
    FROM_SOURCE,
    GATED_IPAM,
    IPAM_PLUGINS,
    Helper,
    call,
    gate_args,
    gated_ipam,
    processes_naming,
    running_helper,
)
from tests.cni.kernel import addresses, link_details, slaves_released
from tests.poll import poll
from tests.rigs.netns import PodNet, ip, pod_network

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bonding")]

TIMEOUT = 30  # the module helper's --request-timeout: far above a request here, even under TCG
START = 600  # seconds a helper may take to start: its preload reads the plugin over 9p under TCG
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
# The ADD steps the plugin can be killed after (commands.cmd_add's _step calls), in order.
ADD_STEPS = [
    "bond created",
    "net1 enslaved",
    "net2 enslaved",
    "bond up",
    "IPAM added",
    "addresses added",
    "routes added",
    "carrier awaited",
]
STARTED_NOT_ANSWERED = "bond: the helper took this request but gave no whole answer"


@pytest.fixture(autouse=True)
def _bundle() -> None:
    require(BOND, "run `make build` (./build.sh)")


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gated_ipam(tmp_path_factory.mktemp("cni-bin"))


def _serve_args(bin_dir: Path) -> list[str]:
    # The helper ignores the caller's CNI_PATH: the gated IPAM is found through its own.
    return [
        "--cni-path",
        f"{bin_dir}:/usr/lib/cni",
        "--request-timeout",
        str(TIMEOUT),
        "--ipam-plugins",
        IPAM_PLUGINS,
    ]


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory, bin_dir: Path) -> Iterator[Helper]:
    sock = tmp_path_factory.mktemp("helper") / "run" / "helper.sock"
    # Room for the 100 concurrent clients below, so that each is answered by the helper.
    args = [*_serve_args(bin_dir), "--max-children", "128"]
    with running_helper(sock, *args, start_timeout=START) as running:
        yield running


@pytest.fixture(scope="module")
def source_helper(tmp_path_factory: pytest.TempPathFactory, bin_dir: Path) -> Iterator[Helper]:
    """The helper from this source tree: the one with the kill points."""
    sock = tmp_path_factory.mktemp("source-helper") / "run" / "helper.sock"
    with running_helper(
        sock, *_serve_args(bin_dir), start_timeout=START, plugin=FROM_SOURCE
    ) as running:
        yield running


@pytest.fixture
def other_socket(tmp_path: Path) -> Path:
    """A socket path for a helper of one test's own (one that test kills or restarts)."""
    (tmp_path / "own").mkdir()
    return tmp_path / "own" / "run" / "helper.sock"


def _conf(data_dir: Path, ipam_type: str = GATED_IPAM) -> dict[str, Any]:
    ipam = {
        "type": ipam_type,
        "subnet": "192.0.2.0/24",
        "rangeStart": "192.0.2.20",
        "gateway": "192.0.2.1",
        "routes": [{"dst": "198.51.100.0/24"}],
        "dataDir": str(data_dir),
    }
    return bond_config("1.0.0", mode="active-backup", miimon="100", ipam=ipam)


def _env(net: PodNet, container: str = "c1", **extra: str) -> dict[str, str]:
    return {
        "CNI_CONTAINERID": container,
        "CNI_NETNS": net.pod_netns_path,
        "CNI_IFNAME": "bond0",
        "CNI_PATH": "/usr/lib/cni",  # replaced by the helper's own --cni-path
        **extra,
    }


def _gated(net: PodNet, gate: Path) -> dict[str, str]:
    """The call's environment, with which gated-host-local waits at `gate` during ADD."""
    return _env(net, **gate_args(gate, "ADD"))


def _leases(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "bondnet").glob("192.0.2.*"))


def _pod_links(net: PodNet) -> list[str]:
    return sorted(
        link["ifname"] for link in json.loads(ip("-j", "link", "show", netns=net.pod_netns))
    )


def _nothing_left(net: PodNet, data_dir: Path) -> None:
    """No bond, both legs released, no other link made, no lease."""
    assert slaves_released(net)
    assert _pod_links(net) == ["lo", "net1", "net2"]
    assert _leases(data_dir) == []


def _added(out: bytes) -> str:
    """The address in ADD's result, which must be the bond over both legs."""
    result = json.loads(out)
    assert [i["name"] for i in result["interfaces"]] == ["bond0", "net1", "net2"], result
    (address,) = [ip["address"] for ip in result["ips"]]
    assert address.startswith("192.0.2.") and address.endswith("/24"), result
    return str(address)


def _added_right(out: bytes, net: PodNet) -> None:
    """ADD's result is the bond with its address, and the kernel agrees."""
    assert addresses(net, "bond0") == {_added(out)}


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process now."""
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            found[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def _children(pid: int) -> list[int]:
    return sorted(child for child, parent in _parents().items() if parent == pid)


def _tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    parents, found, frontier = _parents(), [], [pid]
    while frontier:
        each = frontier.pop()
        found.append(each)
        frontier += [child for child, parent in parents.items() if parent == each]
    return found


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _gate(tmp_path: Path) -> Path:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    return gate


def _reached(gate: Path) -> list[int] | None:
    """The gate's write end ([fd]) once the IPAM waits at it; None before."""
    try:
        return [os.open(gate, os.O_WRONLY | os.O_NONBLOCK)]
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no reader yet
            return None
        raise


def _open_gate(fd: int) -> None:
    os.write(fd, b"go\n")
    os.close(fd)


# --- item 4: a request that runs out of time is rolled back and answered ----------------------


def test_an_add_past_its_timeout_rolls_back_bond_and_lease(
    pod_net: PodNet, helper: Helper, bin_dir: Path, tmp_path: Path
) -> None:
    """The IPAM ADD hangs after host-local leased the address, with the bond up over both legs:
    the helper's timeout raises in the child, ADD unwinds (IPAM DEL included) and the client
    prints error 11 naming the timeout, without running the ADD again in process."""
    gate = _gate(tmp_path)
    conf = _conf(tmp_path / "ipam")
    served = helper.served("ADD")
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(call, "ADD", conf, _gated(pod_net, gate), socket=helper.socket)
        (writer,) = poll(lambda: _reached(gate), timeout=TIMEOUT, what="the IPAM ADD at its gate")
        try:
            # Half done: what the timeout has to undo.
            assert _leases(tmp_path / "ipam") == ["192.0.2.20"]
            bond = link_details(pod_net, "bond0")
            assert bond is not None and "UP" in bond["flags"]
            rc, out, err = pending.result(timeout=TIMEOUT + 90)
        finally:
            os.close(writer)  # never written: the IPAM was killed at its gate
    error = json.loads(out)
    assert rc == 1 and error["code"] == 11, (out, err)
    assert f"stopped this request after its {TIMEOUT} s" in error["msg"]
    assert "--request-timeout" in error["msg"] and "rolled back" in error["details"]
    assert "running in process" not in err
    assert helper.served("ADD") == served + 1
    _nothing_left(pod_net, tmp_path / "ipam")
    assert not processes_naming(bin_dir / GATED_IPAM)  # the hung IPAM was killed, not left
    for leg in pod_net.links:  # released as ADD found them: down, MTU unchanged
        details = link_details(pod_net, leg)
        assert details is not None and "UP" not in details["flags"] and details["mtu"] == 1500
    # And the same pod then bonds through the same helper.
    rc, out, err = call("ADD", conf, _env(pod_net), socket=helper.socket)
    assert rc == 0, err
    _added_right(out, pod_net)
    assert call("DEL", conf, _env(pod_net), socket=helper.socket)[0] == 0
    _nothing_left(pod_net, tmp_path / "ipam")


# --- item 5: the fault matrix ---------------------------------------------------------------


def test_a_client_that_never_sends_is_timed_out_while_others_are_served(
    pod_net: PodNet, helper: Helper, tmp_path: Path
) -> None:
    conf = _conf(tmp_path / "ipam")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(str(helper.socket))
        connected = time.monotonic()
        # Meanwhile a pod is bonded and unbonded through the same helper.
        rc, out, err = call("ADD", conf, _env(pod_net), socket=helper.socket)
        assert rc == 0 and "running in process" not in err, err
        _added_right(out, pod_net)
        assert call("DEL", conf, _env(pod_net), socket=helper.socket) == (0, b"", "")
        _nothing_left(pod_net, tmp_path / "ipam")
        silent.settimeout(TIMEOUT + 90)
        assert silent.recv(100) == b""  # hung up on, unanswered: it never started
        waited = time.monotonic() - connected
    assert waited >= TIMEOUT - 1, waited  # by the timeout, not by anything sooner
    stopped = f"the bond CNI helper stopped this request after its {TIMEOUT} s"
    assert f"request dropped: RequestTimeout: {stopped}" in helper.log()


def _exchange(helper: Helper, data: bytes) -> bytes:
    """Send `data` as a whole request (then EOF) and return what comes back."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(helper.socket))
        conn.settimeout(TIMEOUT + 60)
        try:
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        except (BrokenPipeError, ConnectionResetError):  # the oversized one: it stopped reading
            return b""
        return b"".join(chunks)


def test_garbage_and_oversized_requests_are_dropped_and_the_helper_serves_on(
    helper: Helper,
) -> None:
    """A request the helper cannot decode is never started: no header, no answer (a client of
    ours would run it in process), an error in the helper's log naming what was wrong."""
    valid = wire.encode_request({"CNI_COMMAND": "VERSION"}, b"")
    cases = {
        b"": "too short for a header",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n": "bad magic b'GET '",
        wire.MAGIC + struct.pack(">I", 99) + valid[8:]: "protocol version 99",
        valid[:-2]: "stdin: truncated length",
        valid[:8] + struct.pack(">I", 1 << 30): f"{1 << 30} environment entries, at most",
        valid + b"trailing": "8 bytes after the request",
        valid[:8] + struct.pack(">II", 1, 4) + b"NOEQ" + struct.pack(">I", 0): "not KEY=VALUE",
        wire.encode_request({}, b" " * wire.MAX_REQUEST): f"larger than {wire.MAX_REQUEST} bytes",
    }
    for data, logged in cases.items():
        assert _exchange(helper, data) == b"", data[:40]
        poll(lambda: logged in helper.log(), timeout=30, what=f"the helper to log {logged!r}")  # noqa: B023
    assert helper.proc.poll() is None
    rc, out, err = call("VERSION", {"cniVersion": "0.4.0"}, {}, socket=helper.socket)
    assert rc == 0 and json.loads(out)["cniVersion"] == "0.4.0" and "running" not in err


def test_100_concurrent_clients_each_get_their_own_answer(helper: Helper) -> None:
    versions = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] * 20
    served = helper.served("VERSION")

    def one(version: str) -> tuple[str, str]:
        rc, out, err = call("VERSION", {"cniVersion": version}, {}, socket=helper.socket)
        assert rc == 0, err
        return str(json.loads(out)["cniVersion"]), err

    started = time.monotonic()
    with ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(one, versions))
    print(f"100 concurrent VERSION calls: {time.monotonic() - started:.1f} s")
    assert [version for version, _ in answers] == versions
    assert not [err for _, err in answers if err]  # none fell back
    assert helper.served("VERSION") == served + 100


def test_a_non_root_client_cannot_reach_the_socket(helper: Helper) -> None:
    """The socket's folder is root's, 0700: a non-root caller cannot even connect, and its own
    plugin run (in process, as that user) answers instead."""
    served = helper.served("VERSION")
    rc, out, err = call("VERSION", {"cniVersion": "1.0.0"}, {}, socket=helper.socket, user=NOBODY)
    assert rc == 0 and json.loads(out)["cniVersion"] == "1.0.0"
    assert f"cannot reach the helper at {helper.socket} (Permission denied)" in err
    assert helper.served("VERSION") == served


def test_a_peer_in_another_mount_namespace(helper: Helper, other_socket: Path) -> None:
    """What a mount namespace changes: only whether the socket is there to connect to. A peer in
    a namespace of its own that still sees the socket (a container with the host's /run) is
    served, for the kernel reports no namespace of a unix socket's peer; one whose namespace hides
    the folder finds no helper and runs the plugin itself. The helper cannot tell them apart by
    /proc/<pid>/ns/mnt either: in its own PID namespace (the chart's container has no hostPID),
    SO_PEERCRED gives it the peer's pid as 0, as a second helper started so shows."""
    served = helper.served("VERSION")
    env = {
        "PATH": os.environ["PATH"],
        "CNI_COMMAND": "VERSION",
        "BOND_CNI_HELPER_SOCKET": str(helper.socket),
    }
    same_view = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", str(BOND)],
        input=b"", env=env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert same_view.returncode == 0 and same_view.stderr == b"", same_view.stderr
    assert helper.served("VERSION") == served + 1
    hide = f"mount -t tmpfs none {helper.socket.parent} && exec {BOND}"
    hidden = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", hide],
        input=b"", env=env, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert hidden.returncode == 0 and json.loads(hidden.stdout)["supportedVersions"]
    assert hidden.stderr == b""  # no socket there: the quiet in-process run of a node without one
    assert helper.served("VERSION") == served + 1
    # A helper in its own PID (and mount) namespace, as in the chart's container.
    user = ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc"]
    with running_helper(other_socket, user=user, start_timeout=START) as contained:
        rc, _out, err = call("VERSION", b"", {}, socket=contained.socket)
        assert rc == 0 and err == "", err
        assert "pid 0: VERSION - -: exit 0" in contained.log()


def test_the_helper_killed_before_it_takes_a_request_the_client_falls_back(
    pod_net: PodNet, helper: Helper, bin_dir: Path, other_socket: Path, tmp_path: Path
) -> None:
    """The request waits in the listen queue of a stopped helper, which is then SIGKILLed: the
    connection is reset with no header, so the client runs the ADD in process, and its answer is
    the right one."""
    conf = _conf(tmp_path / "ipam", "host-local")  # in process, IPAM comes from the caller's path
    with running_helper(other_socket, *_serve_args(bin_dir), start_timeout=START) as doomed:
        doomed.proc.send_signal(signal.SIGSTOP)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(call, "ADD", conf, _env(pod_net), socket=doomed.socket)
            poll(lambda: _queued(doomed.socket), timeout=60, what="the client in the listen queue")
            doomed.proc.kill()
            rc, out, err = pending.result(timeout=600)
    assert rc == 0, (out, err)
    assert f"the helper at {doomed.socket} gave no answer" in err and "running in process" in err
    _added_right(out, pod_net)
    assert call("DEL", conf, _env(pod_net), socket=helper.socket)[0] == 0
    _nothing_left(pod_net, tmp_path / "ipam")


def _queued(path: Path) -> bool:
    """Is a connection waiting in the accept queue of the listener at `path`? (ss's Recv-Q)"""
    out = subprocess.run(
        ["ss", "-xlnH", "src", str(path)], capture_output=True, text=True, check=True
    ).stdout.split()
    return len(out) > 2 and int(out[2]) > 0


def test_the_helper_killed_while_its_child_adds_the_answer_is_still_right(
    pod_net: PodNet, helper: Helper, bin_dir: Path, other_socket: Path, tmp_path: Path
) -> None:
    """SIGKILL of the helper alone (not its children) mid-ADD: the child that holds the request
    finishes it and answers; the runtime gets the plugin's own, right answer."""
    gate = _gate(tmp_path)
    conf = _conf(tmp_path / "ipam")
    env = _gated(pod_net, gate)
    with (
        running_helper(other_socket, *_serve_args(bin_dir), start_timeout=START) as doomed,
        ThreadPoolExecutor(1) as pool,
    ):
        pending = pool.submit(call, "ADD", conf, env, socket=doomed.socket)
        (writer,) = poll(lambda: _reached(gate), timeout=TIMEOUT, what="the IPAM at its gate")
        doomed.proc.kill()
        doomed.proc.wait(30)
        assert not pending.done()  # the client waits on, for the child that holds its request
        _open_gate(writer)
        rc, out, err = pending.result(timeout=TIMEOUT + 90)
    assert rc == 0 and "running in process" not in err, (out, err)
    _added_right(out, pod_net)
    assert call("DEL", conf, _env(pod_net), socket=helper.socket)[0] == 0
    _nothing_left(pod_net, tmp_path / "ipam")


def test_the_helper_and_its_children_killed_mid_add_then_restarted_del_cleans_up(
    pod_net: PodNet, bin_dir: Path, other_socket: Path, tmp_path: Path
) -> None:
    """As when the helper's container dies: every process of it SIGKILLed while a child is half
    way through an ADD (bond up, lease taken, IPAM running). The client had been told the request
    started, so it reports error 11 rather than run the ADD again over the half-made bond; the
    runtime's DEL, through a helper restarted on the same socket, removes it all."""
    gate = _gate(tmp_path)
    conf = _conf(tmp_path / "ipam")
    env = _gated(pod_net, gate)
    with (
        running_helper(other_socket, *_serve_args(bin_dir), start_timeout=START) as doomed,
        ThreadPoolExecutor(1) as pool,
    ):
        pending = pool.submit(call, "ADD", conf, env, socket=doomed.socket)
        (writer,) = poll(lambda: _reached(gate), timeout=TIMEOUT, what="the IPAM at its gate")
        processes = _tree(doomed.proc.pid)  # the helper, its children, the IPAM they run
        assert len(processes) >= 4, processes
        for pid in processes:
            os.kill(pid, signal.SIGKILL)
        rc, out, err = pending.result(timeout=120)
        os.close(writer)
    error = json.loads(out)
    assert rc == 1 and error["code"] == 11 and error["msg"] == STARTED_NOT_ANSWERED, (out, err)
    assert "running in process" not in err
    assert link_details(pod_net, "bond0") is not None and _leases(tmp_path / "ipam")  # half made
    with running_helper(other_socket, *_serve_args(bin_dir), start_timeout=START) as restarted:
        assert call("DEL", conf, _env(pod_net), socket=restarted.socket) == (0, b"", "")
        assert restarted.served("DEL") == 1
    _nothing_left(pod_net, tmp_path / "ipam")


def test_a_helper_restarted_while_pods_are_attached_deletes_them(
    bin_dir: Path, other_socket: Path, tmp_path: Path
) -> None:
    confs = [_conf(tmp_path / f"ipam{i}") for i in range(2)]
    with pod_network() as first, pod_network() as second:
        pods = [first, second]
        with running_helper(other_socket, *_serve_args(bin_dir), start_timeout=START) as before:
            for pod, conf in zip(pods, confs, strict=True):
                rc, out, err = call("ADD", conf, _env(pod), socket=before.socket)
                assert rc == 0, err
                _added_right(out, pod)
            assert before.stop() == 0
        with running_helper(other_socket, *_serve_args(bin_dir), start_timeout=START) as after:
            for pod, conf in zip(pods, confs, strict=True):
                assert call("DEL", conf, _env(pod), socket=after.socket) == (0, b"", "")
            assert after.served("DEL") == 2
        for pod, conf in zip(pods, confs, strict=True):
            _nothing_left(pod, Path(conf["ipam"]["dataDir"]))


# The 200 cycles run from one shell, as a runtime execs the client: a Python subprocess per call
# costs more than the call itself under TCG.
CYCLES = """
i=1
while [ "$i" -le "$CYCLES" ]; do
    CNI_COMMAND=ADD "$BOND" <"$CONF" >"$OUT/add.$i" || { echo "ADD $i: exit $?" >&2; exit 1; }
    CNI_COMMAND=DEL "$BOND" <"$CONF" >"$OUT/del.$i" || { echo "DEL $i: exit $?" >&2; exit 1; }
    i=$((i + 1))
done
"""


def _cycles(count: int, conf: dict[str, Any], env: dict[str, str], tmp: Path, sock: Path) -> None:
    """`count` ADD/DEL cycles through the helper at `sock`; each ADD's result checked."""
    (tmp / "conf.json").write_text(json.dumps(conf))
    out = tmp / f"out-{count}"
    out.mkdir()
    variables = {"CYCLES": str(count), "BOND": str(BOND), "CONF": str(tmp / "conf.json")}
    variables |= {"OUT": str(out), "BOND_CNI_HELPER_SOCKET": str(sock)}
    done = subprocess.run(
        ["sh", "-c", CYCLES],
        env={"PATH": os.environ["PATH"], **env, **variables},
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert done.returncode == 0 and done.stdout == done.stderr == "", done.stderr
    for i in range(1, count + 1):
        _added((out / f"add.{i}").read_bytes())
        assert (out / f"del.{i}").read_bytes() == b""


def _child_ms(helper: Helper, command: str, last: int) -> float:
    """The mean of the helper's own timings ("exit 0 in X ms") of its `last` `command`s."""
    times = [
        float(line.rsplit(" in ", 1)[1].removesuffix(" ms"))
        for line in helper.log().splitlines()
        if f": {command} c1 bond0: exit 0 in " in line
    ]
    return sum(times[-last:]) / len(times[-last:])


def test_200_add_del_cycles_leak_no_link_lease_file_child_or_fd(
    pod_net: PodNet, helper: Helper, tmp_path: Path
) -> None:
    conf = _conf(tmp_path / "ipam", "host-local")
    env = _env(pod_net)
    pid = helper.proc.pid

    def children() -> list[int]:
        def spares() -> list[int] | None:
            now = _children(pid)
            return now if len(now) == 2 else None

        return poll(spares, timeout=60, what="the helper's two spares")

    _cycles(1, conf, env, tmp_path, helper.socket)  # makes host-local's own files (lock, last)
    fds, spares = _fds(pid), children()
    host_links = _host_links()
    files = sorted(p.name for p in (tmp_path / "ipam").rglob("*"))
    served = helper.served("ADD")
    started = time.monotonic()
    _cycles(200, conf, env, tmp_path, helper.socket)
    seconds = time.monotonic() - started
    assert helper.served("ADD") == served + 200
    after = children()
    print(
        f"200 ADD/DEL cycles through the helper: {seconds:.1f} s, {seconds / 200 * 1000:.0f} ms"
        f" a cycle (in the helper's children: ADD {_child_ms(helper, 'ADD', 200):.0f} ms, DEL "
        f"{_child_ms(helper, 'DEL', 200):.0f} ms); helper fds {fds} -> {_fds(pid)}; children "
        f"{len(spares)} -> {len(after)}"
    )
    assert _fds(pid) == fds
    assert set(after).isdisjoint(spares)  # the spares served and were replaced, none lingers
    assert _pod_links(pod_net) == ["lo", "net1", "net2"] and slaves_released(pod_net)
    assert _host_links() == host_links
    assert sorted(p.name for p in (tmp_path / "ipam").rglob("*")) == files
    assert _leases(tmp_path / "ipam") == []
    assert not [p for p in _tree(pid) if p != pid and p not in after]  # no grandchild either


def _host_links() -> list[str]:
    return sorted(link["ifname"] for link in json.loads(ip("-j", "link", "show")))


@pytest.mark.parametrize("step", ADD_STEPS)
def test_the_plugin_killed_after_a_step_of_add_then_del_leaves_nothing(
    pod_net: PodNet, source_helper: Helper, tmp_path: Path, step: str
) -> None:
    helper = source_helper
    conf = _conf(tmp_path / "ipam")
    kills = helper.log().count("killed by signal 9")
    rc, out, err = call("ADD", conf, _env(pod_net, **{KILL_AFTER: step}), socket=helper.socket)
    error = json.loads(out)
    assert rc == 1 and error["msg"] == STARTED_NOT_ANSWERED, (out, err)
    assert "running in process" not in err  # told it started, the client did not run it again
    poll(
        lambda: helper.log().count("killed by signal 9") > kills,
        timeout=30,
        what="the helper to reap its killed child",
    )
    # The step did happen before the kill: there is something for DEL to clean.
    assert link_details(pod_net, "bond0") is not None
    past_ipam = ADD_STEPS.index(step) >= ADD_STEPS.index("IPAM added")
    assert bool(_leases(tmp_path / "ipam")) == past_ipam
    assert call("DEL", conf, _env(pod_net), socket=helper.socket) == (0, b"", "")
    _nothing_left(pod_net, tmp_path / "ipam")


def test_the_shipped_helper_ignores_the_kill_point(
    pod_net: PodNet, helper: Helper, tmp_path: Path
) -> None:
    """Issue 21: a caller set BOND_CNI_TEST_KILL_AFTER and the plugin killed itself part way,
    so no rollback ran. The built bin/bond has no kill points: through its helper and in
    process, an ADD with it set to the first step makes the whole bond, as without it."""
    conf = _conf(tmp_path / "ipam", "host-local")
    env = _env(pod_net, **{KILL_AFTER: ADD_STEPS[0]})
    kills = helper.log().count("killed by signal 9")
    for through in (helper.socket, None):
        rc, out, err = call("ADD", conf, env, socket=through)
        assert rc == 0 and "running in process" not in err, (out, err)
        _added_right(out, pod_net)
        assert call("DEL", conf, env, socket=through) == (0, b"", "")
        _nothing_left(pod_net, tmp_path / "ipam")
    assert helper.log().count("killed by signal 9") == kills


def test_the_plugin_killed_from_outside_during_ipam_add_then_del_leaves_nothing(
    pod_net: PodNet, helper: Helper, bin_dir: Path, tmp_path: Path
) -> None:
    """No kill point: the child is SIGKILLed by another process while its IPAM ADD waits."""
    gate = _gate(tmp_path)
    conf = _conf(tmp_path / "ipam")
    env = _gated(pod_net, gate)
    spares = set(_children(helper.proc.pid))
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(call, "ADD", conf, env, socket=helper.socket)
        (writer,) = poll(lambda: _reached(gate), timeout=TIMEOUT, what="the IPAM at its gate")
        (ipam,) = processes_naming(bin_dir / GATED_IPAM)
        child = _parents()[ipam]
        assert child in spares | set(
            _children(helper.proc.pid)
        )  # the helper's child, not some other
        os.kill(child, signal.SIGKILL)
        os.kill(ipam, signal.SIGKILL)  # it would wait at its gate for ever
        rc, out, err = pending.result(timeout=120)
        os.close(writer)
    assert rc == 1 and json.loads(out)["msg"] == STARTED_NOT_ANSWERED, (out, err)
    assert link_details(pod_net, "bond0") is not None and _leases(tmp_path / "ipam")
    assert call("DEL", conf, _env(pod_net), socket=helper.socket) == (0, b"", "")
    _nothing_left(pod_net, tmp_path / "ipam")
