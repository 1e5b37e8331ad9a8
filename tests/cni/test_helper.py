"""The warm helper and its client, as built: `bin/bond serve` and `bin/bond` on this host.

Each answer through the helper must be the in-process plugin's answer, byte for byte; whatever
goes wrong on the way (no helper, a dead or busy helper, an untrusted one), the client still runs
the plugin, or, once the helper had started the request, reports an error. The helper's fault
matrix against a real kernel (bonds, leases, kills, 200 cycles) is in test_helper_kernel.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cni.core.config import LOG_DIR
from cni.helper import wire
from tests.cni.conftest import bond_config, require
from tests.cni.helper_rig import (
    BOND,
    GATED_IPAM,
    IPAM_PLUGINS,
    Helper,
    call,
    gate_args,
    gated_ipam,
    processes_naming,
    running_helper,
)
from tests.poll import poll

ENV = {
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/run/netns/bond-test-none",
    "CNI_IFNAME": "bond0",
    "CNI_PATH": "/usr/lib/cni",
}
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture(autouse=True)
def _bundle() -> None:
    require(BOND, "run `make build` (./build.sh)")


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Helper]:
    sock = tmp_path_factory.mktemp("helper") / "run" / "helper.sock"
    with running_helper(sock, "--cni-path", ENV["CNI_PATH"]) as running:
        yield running


def _ipam_conf(data_dir: Path) -> dict[str, Any]:
    return bond_config(
        "1.0.0",
        ipam={"type": "host-local", "subnet": "192.0.2.0/24", "dataDir": str(data_dir)},
    )


CASES: list[tuple[str, str, bytes | dict[str, Any], dict[str, str]]] = [
    ("version", "VERSION", {"cniVersion": "0.4.0"}, {}),
    ("version-empty", "VERSION", b"", {}),
    ("undecodable", "ADD", b"{oops", ENV),
    ("bad-field", "ADD", bond_config("1.0.0", mode="nope"), ENV),
    ("unknown-command", "FROB", bond_config(), ENV),
    ("missing-env", "ADD", bond_config(), {"CNI_CONTAINERID": "c1"}),
    ("netns-missing", "ADD", bond_config("1.0.0"), ENV),
    ("del-netns-gone", "DEL", bond_config("1.0.0"), ENV),
    ("check-old-version", "CHECK", bond_config("0.3.1"), ENV),
]


@pytest.mark.parametrize(
    ("command", "stdin", "env"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_helper_answers_as_the_plugin_in_process(
    helper: Helper, command: str, stdin: bytes | dict[str, Any], env: dict[str, str]
) -> None:
    served = helper.served(command)
    through = call(command, stdin, env, socket=helper.socket)
    alone = call(command, stdin, env)
    assert through == alone
    assert helper.served(command) == served + 1  # and the helper did answer it
    if command == "VERSION":
        assert through[0] == 0 and json.loads(through[1])["supportedVersions"]
    elif command != "DEL":
        assert through[0] == 1 and "Traceback" not in through[2]


def test_del_releases_the_lease_through_the_helper(helper: Helper, tmp_path: Path) -> None:
    """The child execs IPAM from the helper's --cni-path and frees the caller's lease."""
    conf = _ipam_conf(tmp_path)
    ipam_env = {**ENV, "CNI_COMMAND": "ADD", "PATH": os.environ["PATH"]}
    added = subprocess.run(
        ["/usr/lib/cni/host-local"],
        input=json.dumps(conf).encode(),
        env=ipam_env,
        capture_output=True,
        check=True,
    )
    assert json.loads(added.stdout)["ips"][0]["address"] == "192.0.2.2/24"
    assert (tmp_path / "bondnet" / "192.0.2.2").exists()
    assert call("DEL", conf, ENV, socket=helper.socket) == (0, b"", "")
    assert not (tmp_path / "bondnet" / "192.0.2.2").exists()


def _rogue_ipam(directory: Path, marker: Path) -> Path:
    """An executable `sh` in `directory` that leaves `marker` when run, and answers as IPAM."""
    directory.mkdir()
    script = directory / "sh"
    script.write_text(f'#!/bin/sh\ntouch {marker}\necho \'{{"cniVersion": "1.0.0"}}\'\n')
    script.chmod(0o755)
    return directory


def test_the_caller_cannot_choose_what_the_helper_execs(tmp_path: Path) -> None:
    """The escalation of issue #10: any root process reaching the socket sent DEL with
    CNI_PATH=/bin and `ipam.type: "sh"`, and the helper ran a shell. Now IPAM plugins come only
    from the helper's --cni-path (here /usr/lib/cni, where no `sh` is), even for a name its
    --ipam-plugins allows (issue 21 refuses `sh` by default: test_helper_policy.py)."""
    marker = tmp_path / "ran"
    rogue = _rogue_ipam(tmp_path / "rogue", marker)
    conf = bond_config("1.0.0", ipam={"type": "sh"})
    args = ("--cni-path", ENV["CNI_PATH"], "--ipam-plugins", "host-local,sh")
    with running_helper(tmp_path / "run" / "helper.sock", *args) as helper:
        for cni_path in (str(rogue), "/bin", f"{rogue}:/usr/lib/cni"):
            env = {**ENV, "CNI_PATH": cni_path}
            rc, out, err = call("DEL", conf, env, socket=helper.socket)
            assert (rc, out) == (0, b"")  # DEL never fails on IPAM it cannot find; it says so:
            assert "IPAM plugin 'sh' not found in CNI_PATH '/usr/lib/cni'" in err
            assert "gave no answer" not in err and not marker.exists()
        assert helper.served("DEL") == 3  # the helper answered: no fallback ran these in process
    # The plugin run by the runtime itself uses the runtime's CNI_PATH, as the spec says: the
    # same request in process does run `sh` (so this test would see the helper doing it).
    rc, _out, err = call("DEL", conf, {**ENV, "CNI_PATH": str(rogue)})
    assert rc == 0 and marker.exists(), err


def test_log_file_only_in_the_log_folder(
    helper: Helper, tmp_path: Path, node_log_file: Path
) -> None:
    outside = tmp_path / "appended"
    conf = bond_config("1.0.0", logFile=str(outside))
    through = call("DEL", conf, ENV, socket=helper.socket)
    assert through == call("DEL", conf, ENV)  # refused the same with or without the helper
    error = json.loads(through[1])
    assert through[0] == 1 and error["code"] == 7
    assert "'logFile'" in error["msg"] and "a file name in /var/log/bond-cni" in error["msg"]
    assert not outside.exists()
    # In the folder it is written, through the helper too; a symlink planted there is not followed.
    conf = bond_config("1.0.0", logFile=str(node_log_file))
    assert call("DEL", conf, ENV, socket=helper.socket) == (0, b"", "")
    assert "DEL c1: no netns" in node_log_file.read_text()
    node_log_file.unlink()
    node_log_file.symlink_to(outside)
    rc, out, err = call("DEL", conf, ENV, socket=helper.socket)
    assert (rc, out) == (0, b"") and f"cannot open logFile {node_log_file}" in err
    assert not outside.exists()


def test_a_log_folder_that_is_a_symlink_is_not_followed(tmp_path: Path) -> None:
    """Issue 21: the plugin made the log folder with makedirs, which follows a symlink planted
    as /var/log/bond-cni, so the append went wherever it pointed. Now the folder is opened
    without following one: the logFile is not written (a warning says so), with or without the
    helper. Each run has its own mount namespace, whose /var/log holds only that symlink."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plant = f'mount -t tmpfs none /var/log && ln -s {elsewhere} {LOG_DIR} && exec "$0" "$@"'
    planted = ["unshare", "--mount", "--propagation", "private", "sh", "-c", plant]
    conf = bond_config("1.0.0", logFile=f"{LOG_DIR}/bond.log")
    refused = f"cannot open logFile {LOG_DIR}/bond.log"
    rc, out, err = call("DEL", conf, ENV, user=planted)
    assert (rc, out) == (0, b"") and refused in err, err
    with running_helper(tmp_path / "run" / "helper.sock", user=planted) as helper:
        rc, out, err = call("DEL", conf, ENV, socket=helper.socket)
        assert (rc, out) == (0, b"") and refused in err, err
        assert helper.served("DEL") == 1
    assert list(elsewhere.iterdir()) == []


def test_a_request_over_the_cap_runs_in_process_unsent(helper: Helper) -> None:
    """The helper holds at most wire.MAX_REQUEST per request (with --max-children of them at
    once); a larger call is the client's to run, in process, with the same answer."""
    conf = bond_config("1.0.0", prevResult={"pad": "x" * wire.MAX_REQUEST}, mode="x")
    served = helper.served("ADD")
    rc, out, err = call("ADD", conf, ENV, socket=helper.socket)
    alone = call("ADD", conf, ENV)
    assert (rc, out) == alone[:2] and rc == 1 and b"'mode'" in out
    assert f"over the helper's limit of {wire.MAX_REQUEST}, running in process" in err
    assert helper.served("ADD") == served


def test_the_helper_drops_an_oversized_request(helper: Helper) -> None:
    """A client other than ours that sends more than the cap gets no answer (so it would run the
    request itself) and the helper's child stops reading at the cap."""
    request = wire.encode_request({**ENV, "CNI_COMMAND": "VERSION"}, b" " * wire.MAX_REQUEST)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(helper.socket))
        try:
            conn.sendall(request)
            conn.shutdown(socket.SHUT_WR)
            answer = conn.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            answer = b""
    assert answer == b""
    poll(
        lambda: f"request larger than {wire.MAX_REQUEST} bytes" in helper.log(),
        timeout=30,
        what="the helper to log the oversized request",
    )


def test_concurrent_requests_each_get_their_own_answer(helper: Helper) -> None:
    versions = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] * 4

    def one(version: str) -> str:
        rc, out, err = call("VERSION", {"cniVersion": version}, {}, socket=helper.socket)
        assert rc == 0, err
        return str(json.loads(out)["cniVersion"])

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, versions)) == versions


def test_no_helper_runs_in_process_quietly(tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(stale))  # a socket file with nobody listening: a helper that died
    expected = call("ADD", bond_config("1.0.0", mode="nope"), ENV)
    for path in (tmp_path / "absent.sock", stale):
        assert call("ADD", bond_config("1.0.0", mode="nope"), ENV, socket=path) == expected


def test_busy_helper_hands_the_request_back(tmp_path: Path) -> None:
    with running_helper(tmp_path / "run" / "helper.sock", "--max-children", "0") as busy:
        rc, out, err = call("VERSION", {"cniVersion": "1.0.0"}, {}, socket=busy.socket)
        assert rc == 0 and json.loads(out)["cniVersion"] == "1.0.0"
        assert "gave no answer" in err and "running in process" in err
        assert "busy" in busy.log()
        assert busy.served("VERSION") == 0


def _one_answer_server(path: Path, reply: bytes) -> threading.Thread:
    """Fault injection: a helper that dies part way through its answer cannot be produced on
    demand, so a socket server written here reads one request and sends `reply`, then closes."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                while conn.recv(65536):
                    pass
                conn.sendall(reply)

    thread = threading.Thread(target=serve)
    thread.start()
    return thread


def test_an_answer_without_its_header_means_not_started(tmp_path: Path) -> None:
    """No whole header: the helper never started the request, so the client runs it itself."""
    path = tmp_path / "half.sock"
    whole = wire.encode_response(wire.Response(0, b'{"cniVersion": "9"}', b""))
    thread = _one_answer_server(path, whole[: len(wire.HEADER) - 1])
    try:
        rc, out, err = call("VERSION", {"cniVersion": "0.4.0"}, {}, socket=path)
    finally:
        thread.join(10)
    assert rc == 0 and json.loads(out)["cniVersion"] == "0.4.0"
    assert "short or malformed reply), running in process" in err


def test_a_started_request_without_a_whole_answer_is_not_run_again(tmp_path: Path) -> None:
    """The header came (the request started), the rest did not: the plugin may have changed the
    pod's network part way, so the client reports error 11 and leaves the rest to DEL."""
    path = tmp_path / "half.sock"
    whole = wire.encode_response(wire.Response(0, b'{"cniVersion": "9"}', b""))
    thread = _one_answer_server(path, whole[:-3])
    try:
        rc, out, err = call("ADD", bond_config("1.0.0"), ENV, socket=path)
    finally:
        thread.join(10)
    error = json.loads(out)
    assert rc == 1 and error["code"] == 11, out
    assert error["msg"] == "bond: the helper took this request but gave no whole answer"
    assert f"the helper at {path} started it" in error["details"]
    assert "the runtime's DEL cleans up, then retry" in error["details"]
    assert "running in process" not in err


def test_a_request_past_its_timeout_is_rolled_back_and_answered(tmp_path: Path) -> None:
    """#10 item 4: SIGALRM raises in the child wherever the plugin is (here: in a real IPAM that
    hangs), the plugin unwinds, and the helper answers error 11 naming the timeout and what to
    do; the client, told the request had started, does not run it again. The kernel tier times
    out an ADD half done (test_helper_kernel.py)."""
    bin_dir = gated_ipam(tmp_path / "bin")
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    ipam = {"type": GATED_IPAM, "subnet": "192.0.2.0/24", "dataDir": str(tmp_path / "ipam")}
    conf = bond_config("1.0.0", ipam=ipam)
    env = {**ENV, **gate_args(gate, "DEL")}
    sock = tmp_path / "run" / "helper.sock"
    args = ("--cni-path", str(bin_dir), "--request-timeout", "2", "--ipam-plugins", IPAM_PLUGINS)
    with running_helper(sock, *args) as helper:
        rc, out, err = call("DEL", conf, env, socket=helper.socket)
        error = json.loads(out)
        assert rc == 1 and error["code"] == 11, (out, err)
        assert error["msg"] == (
            "the bond CNI helper stopped this request after its 2 s (bond serve --request-timeout)"
        )
        assert "raise --request-timeout" in error["details"]
        assert "running in process" not in err and "gave no" not in err
        assert helper.served("DEL") == 1
        # The hung IPAM plugin was killed on the way out, not left waiting at its gate.
        poll(
            lambda: not processes_naming(bin_dir / GATED_IPAM),
            timeout=10,
            what="the IPAM to be gone",
        )
        assert call("VERSION", b"", {}, socket=helper.socket)[0] == 0  # and the helper serves on


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another uid can reach (pytest's tmp dirs are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="bond-helper-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _needs_root_and_setpriv() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.fail("the uid tests need root and setpriv (util-linux)", pytrace=False)


def test_helper_refuses_other_users(shared_dir: Path) -> None:
    _needs_root_and_setpriv()
    with running_helper(shared_dir / "run" / "helper.sock") as running:
        running.socket.parent.chmod(0o755)  # let nobody reach the socket: the helper must refuse
        running.socket.chmod(0o666)
        rc, out, err = call("VERSION", b"", {}, socket=running.socket, user=NOBODY)
        assert rc == 0 and json.loads(out)["supportedVersions"]  # answered in process
        assert "gave no answer" in err
        assert "uid 65534 is neither root nor 0" in running.log()
        assert running.served("VERSION") == 0


def test_client_distrusts_a_helper_of_another_user(shared_dir: Path) -> None:
    _needs_root_and_setpriv()
    shared_dir.chmod(0o777)
    with running_helper(shared_dir / "run" / "helper.sock", user=NOBODY) as foreign:
        foreign.socket.chmod(0o666)
        foreign.socket.parent.chmod(0o755)
        rc, out, err = call("VERSION", {"cniVersion": "1.0.0"}, {}, socket=foreign.socket)
        assert rc == 0 and json.loads(out)["cniVersion"] == "1.0.0"
        assert "runs as uid 65534, neither root nor us: not trusted" in err
        assert foreign.served("VERSION") == 0


def _bond(command: str, socket_path: str) -> subprocess.CompletedProcess[str]:
    """`bin/bond serve|probe --socket PATH`, for what it prints and its exit code."""
    argv = [str(BOND), command, "--socket", socket_path]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_socket_is_private_and_removed_on_sigterm(tmp_path: Path) -> None:
    with running_helper(tmp_path / "run" / "helper.sock") as running:
        assert running.socket.stat().st_mode & 0o777 == 0o600
        assert running.socket.parent.stat().st_mode & 0o777 == 0o700
        assert "2 spare children" in running.log()
        assert len(processes_naming(running.socket)) == 3  # the helper and its two idle spares
        assert running.stop() == 0
        assert not running.socket.exists()
        assert "stopping" in running.log()
        poll(lambda: not processes_naming(running.socket), timeout=10, what="the spares to exit")


def test_spares_exit_when_the_helper_is_killed(tmp_path: Path) -> None:
    with running_helper(tmp_path / "run" / "helper.sock") as running:
        running.proc.kill()  # no SIGTERM handler runs: the spares only see the line go dead
        running.proc.wait(10)
        poll(lambda: not processes_naming(running.socket), timeout=10, what="the spares to exit")


def test_without_spares_each_call_gets_a_child_forked_for_it(tmp_path: Path) -> None:
    with running_helper(tmp_path / "run" / "helper.sock", "--spares", "0") as running:
        assert processes_naming(running.socket) == [running.proc.pid]
        for command, stdin, env in [c[1:] for c in CASES[:4]]:
            assert call(command, stdin, env, socket=running.socket) == call(command, stdin, env)
        assert running.served("VERSION") == 2 and running.served("ADD") == 2


def test_second_helper_and_non_socket_are_refused(helper: Helper, tmp_path: Path) -> None:
    second = _bond("serve", str(helper.socket))
    assert second.returncode == 2
    assert f"another helper already answers at {helper.socket}" in second.stderr
    plain = tmp_path / "plain"
    plain.write_text("keep me")
    refused = _bond("serve", str(plain))
    assert refused.returncode == 2 and "is not a socket" in refused.stderr
    assert plain.read_text() == "keep me"


def test_socket_folder_must_be_private_real_and_ours(tmp_path: Path) -> None:
    """kubelet's DirectoryOrCreate makes the folder 0755: the helper makes its own folder 0700. A
    symlink, or a folder of another uid, and `serve` refuses to start, naming path and fix."""
    opened = tmp_path / "open"
    opened.mkdir(mode=0o755)
    opened.chmod(0o755)
    with running_helper(opened / "helper.sock") as running:
        assert opened.stat().st_mode & 0o777 == 0o700
        assert f"socket folder {opened}: mode 0755 made 0700" in running.log()
    link = tmp_path / "link"
    link.symlink_to(opened)
    refused = _bond("serve", str(link / "helper.sock"))
    assert refused.returncode == 2
    assert f"socket folder {link} is a symlink: make it a real folder" in refused.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 65534, 65534)
    refused = _bond("serve", str(foreign / "helper.sock"))
    assert refused.returncode == 2
    assert f"socket folder {foreign} is owned by uid 65534" in refused.stderr
    assert f"`chown root {foreign}`" in refused.stderr
    assert not (foreign / "helper.sock").exists()


def test_probe(helper: Helper, tmp_path: Path) -> None:
    ok = _bond("probe", str(helper.socket))
    assert ok.returncode == 0 and "1.1.0" in ok.stdout
    absent = _bond("probe", str(tmp_path / "none.sock"))
    assert absent.returncode == 1 and "no answer" in absent.stderr


def test_requests_run_in_one_process_each_get_their_own_logs() -> None:
    """A spare runs the plugin once idle, then for its caller: the second run's errors must land
    on the second run's stderr, not on the first's."""
    from cni.helper.server import run_request  # noqa: PLC0415 - in this process, not the bundle

    environ = dict(os.environ)
    bad = wire.Request({**ENV, "CNI_COMMAND": "ADD"}, b"{oops")
    first, second = run_request(bad), run_request(bad)
    assert first == second
    assert second.code == 1 and b"bond-cni ERROR ADD failed: code 6" in second.stderr
    assert os.environ == environ  # the request's environment stays the request's
