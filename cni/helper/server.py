"""The warm per-node helper: the plugin preloaded once, a forked child per request.

A Python plugin exec'd per pod attachment pays for its interpreter and imports every time
(~120 ms on a host, seconds in a TCG VM). `bond serve` pays once; the client `bond`
(cni/helper/client/bond.c) sends it each invocation's environment and stdin over a unix socket,
a child forked from the warm process runs cni.plugin.dispatch.invoke() on them, exactly as the
plugin executable does, and the answer goes back. Children are forked ahead (`--spares`) and run
the plugin once idle, so a caller waits for neither a fork nor the first copy-on-write faults.
Without a helper the client runs the plugin in process.

A child tells its client the request started (wire.HEADER) before it runs the plugin; from then on
the client never runs that request itself. A request past --request-timeout raises
RequestTimeout in its child, wherever the plugin is: ADD unwinds its undo stack as on any failure
and the client gets error 11 saying so, not a second run of the same ADD.

The helper must see the node's paths as the runtime does: the child opens CNI_NETNS paths, execs
IPAM plugins and writes `logFile`, all as the in-process plugin would. A caller is any root
process that reaches the socket, not the runtime, so the node decides (cni.core.policy):
- CNI_NETNS: only a file directly in /run/netns or /var/run/netns, not a symlink (and
  /proc/<pid>/ns/net only with --proc-netns); never the node's own netns, compared by inode;
- host links: `linksInContainer: false` only with --allow-host-links (a NAD's allowHostLinks is
  any namespace user's to write), and never a link a default route goes out of;
- IPAM: only the plugins named by --ipam-plugins, looked up only in the helper's own
  `--cni-path` (the request's CNI_PATH is replaced, or CNI_PATH=/bin and `ipam.type: "sh"` would
  run a shell), exec'd with the CNI variables and a fixed PATH only, never the caller's
  environment (LD_PRELOAD);
- `logFile`: only a file in cni.core.config.LOG_DIR (checked in the plugin, in and out of here);
- size: a request is at most wire.MAX_REQUEST bytes, and at most --max-children run at once.
Only clients running as root or as the helper's own uid are served; the socket is created 0600
in a folder that must be owned by root or the helper's uid, mode 0700 and not a symlink.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import stat
import struct
import sys
import time
from dataclasses import dataclass
from typing import NoReturn

from cni.core.errors import TRY_AGAIN_LATER, CNIError
from cni.core.policy import DEFAULT_IPAM_PLUGINS, NodePolicy
from cni.helper import wire
from cni.plugin.dispatch import invoke

DEFAULT_SOCKET = "/run/bond-cni/helper.sock"
DEFAULT_CNI_PATH = "/opt/cni/bin"
ROLLBACK_GRACE = 30.0  # seconds a timed-out request has to unwind before its child is killed
log = logging.getLogger("bond-cni-helper")


class HelperError(Exception):
    """The helper cannot start: the message says what to do."""


def preload() -> None:
    """Import and warm everything a request needs, so no child imports anything again."""
    import json  # noqa: PLC0415, F401
    import logging.handlers  # noqa: PLC0415, F401
    import subprocess  # noqa: PLC0415, F401

    from cni.core import config, diversity, hachecks, options, result  # noqa: PLC0415, F401
    from cni.kernel import hostdev  # noqa: PLC0415, F401
    from cni.kernel.netlink import Netns  # noqa: PLC0415
    from cni.plugin import commands, ipam  # noqa: PLC0415, F401

    with Netns(None) as host:
        host.links()
        host.link("lo")
        host.addresses(1)


def check_folder(path: str) -> None:
    """The socket's folder: made 0700 if absent; else it must be a real folder (not a symlink)
    owned by root or by us, and private. One of ours that is more open (kubelet's
    DirectoryOrCreate makes 0755) is made 0700. Anything else: HelperError naming the fix."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.lexists(directory):
        try:
            os.makedirs(directory, mode=0o700)
        except OSError as exc:
            raise HelperError(f"cannot create the socket folder {directory}: {exc}") from exc
    info = os.lstat(directory)
    if stat.S_ISLNK(info.st_mode):
        raise HelperError(
            f"socket folder {directory} is a symlink: make it a real folder owned by root, "
            "mode 0700, or pick another --socket"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise HelperError(f"socket folder {directory} is not a folder: remove it or pick --socket")
    me = os.geteuid()
    if info.st_uid not in (0, me):
        raise HelperError(
            f"socket folder {directory} is owned by uid {info.st_uid}, not root nor {me}: "
            f"`chown root {directory}` or pick another --socket"
        )
    if info.st_mode & 0o077:
        if info.st_uid != me:
            raise HelperError(
                f"socket folder {directory} has mode {info.st_mode & 0o7777:04o}, not 0700: "
                f"`chmod 0700 {directory}` or pick another --socket"
            )
        os.chmod(directory, 0o700)
        log.info("socket folder %s: mode %04o made 0700", directory, info.st_mode & 0o7777)


def _listen(path: str) -> socket.socket:
    check_folder(path)
    with contextlib.suppress(FileNotFoundError):
        mode = os.lstat(path).st_mode
        if not stat.S_ISSOCK(mode):
            raise HelperError(f"{path} exists and is not a socket: remove it or pick --socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # a socket nobody listens on: left by a helper that died
        else:
            raise HelperError(f"another helper already answers at {path}: stop it first")
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(path)
    except OSError as exc:
        listener.close()
        raise HelperError(f"cannot listen at {path}: {exc.strerror}") from exc
    finally:
        os.umask(old)
    listener.listen(128)
    return listener


def _peer(conn: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end, from the kernel."""
    pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return pid, uid


def read_to_eof(conn: socket.socket, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := conn.recv(65536):
        size += len(chunk)
        if size > limit:
            raise wire.WireError(f"request larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


DEFAULT_POLICY = NodePolicy.helper(
    host_links=False, ipam_plugins=DEFAULT_IPAM_PLUGINS, proc_netns=False
)


def run_request(
    request: wire.Request, cni_path: str = DEFAULT_CNI_PATH, policy: NodePolicy = DEFAULT_POLICY
) -> wire.Response:
    """The plugin on one request's environment and stdin (in a child), under the node's
    `policy`, with CNI_PATH replaced by the helper's own `cni_path` (a caller-chosen one would
    let it pick what the helper execs)."""
    env = dict(request.env)
    if env.get("CNI_PATH"):  # one without gets the plugin's own "missing" error, as in process
        env["CNI_PATH"] = cni_path
    return wire.Response(*invoke(env, request.stdin, policy))


class RequestTimeout(CNIError):
    """A request ran past --request-timeout: raised in its child by SIGALRM, wherever the plugin
    is, so ADD unwinds its undo stack (IPAM included) as for any other failure, and the answer is
    this error."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            TRY_AGAIN_LATER,
            f"the bond CNI helper stopped this request after its {seconds:g} s "
            "(bond serve --request-timeout)",
            "an ADD rolled back what it had done, and the runtime's DEL and retry do the rest; "
            "a step (most often the IPAM plugin, which was then killed) did not finish in time: "
            "if it recurs, find that step in the helper's log or raise --request-timeout",
        )


def _arm_timeout(seconds: float) -> None:
    """SIGALRM after `seconds` raises RequestTimeout in this child, once. The unwinding that
    follows gets ROLLBACK_GRACE seconds more; after that the default action ends the child."""

    def expire(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.setitimer(signal.ITIMER_REAL, ROLLBACK_GRACE)
        raise RequestTimeout(seconds)

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _child(
    conn: socket.socket, peer: int, timeout: float, cni_path: str, policy: NodePolicy
) -> NoReturn:
    status = 1
    try:
        _arm_timeout(timeout)
        conn.settimeout(timeout)
        started = time.monotonic()
        # Diagnostics only: a set of ~300 module names per request, when someone asks.
        before = set(sys.modules) if log.isEnabledFor(logging.DEBUG) else None
        request = wire.decode_request(read_to_eof(conn, wire.MAX_REQUEST))
        conn.sendall(wire.HEADER)  # started: from here on the client never runs it again
        response = run_request(request, cni_path, policy)
        signal.setitimer(signal.ITIMER_REAL, 0)
        conn.sendall(wire.encode_answer(response))
        log.info(
            "pid %d: %s %s %s: exit %d in %.1f ms",
            peer,
            request.env.get("CNI_COMMAND", "?"),
            request.env.get("CNI_CONTAINERID", "-"),
            request.env.get("CNI_IFNAME", "-"),
            response.code,
            (time.monotonic() - started) * 1000,
        )
        lazy = sorted(set(sys.modules) - before) if before is not None else []
        if lazy:
            log.debug("pid %d: imported after preload: %s", peer, " ".join(lazy))
        status = 0
    except Exception as exc:  # no answer: the client runs it in process unless it had started
        log.error("pid %d: request dropped: %s: %s", peer, type(exc).__name__, exc)
    finally:
        os._exit(status)


def _spare(
    line: socket.socket, timeout: float, cni_path: str, policy: NodePolicy, warm: bool
) -> NoReturn:
    """A child: wait for the helper to pass it a connection, then serve that one."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if warm:
        # Copy-on-write: the first run through the plugin copies the pages it writes. A child
        # forked ahead does that idle, not on a caller's clock.
        run_request(wire.Request({"CNI_COMMAND": "VERSION"}, b""), cni_path, policy)
    try:
        message, fds, _flags, _addr = socket.recv_fds(line, 16, 1)
    except OSError:
        os._exit(0)
    line.close()
    if not fds or len(message) != 4:  # the helper is stopping, or gone: nothing to serve
        os._exit(0)
    (peer,) = struct.unpack("=i", message)
    _child(socket.socket(fileno=fds[0]), peer, timeout, cni_path, policy)


@dataclass
class _Spare:
    pid: int
    line: socket.socket  # the helper's end of the socket pair a connection is passed over


class _Pool:
    """The helper's children. `spares` of them are forked ahead of requests and wait idle; a
    connection goes to one of those (its fd passed with SCM_RIGHTS), so no caller waits for a
    fork, and the pool is topped up after each hand-off. At most `max_children` in all."""

    def __init__(
        self,
        listener: socket.socket,
        spares: int,
        max_children: int,
        timeout: float,
        *,
        cni_path: str,
        policy: NodePolicy,
    ) -> None:
        self._listener = listener
        self._cni_path = cni_path
        self._policy = policy
        self._spares = spares
        self._max = max_children
        self._timeout = timeout
        self.idle: list[_Spare] = []
        self.children: set[int] = set()

    def _spawn(self, warm: bool) -> _Spare:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            raise
        if pid == 0:
            ours.close()
            self._listener.close()
            for spare in self.idle:  # or an idle sibling never sees the helper hang up
                spare.line.close()
            _spare(theirs, self._timeout, self._cni_path, self._policy, warm)
        theirs.close()
        self.children.add(pid)
        return _Spare(pid, ours)

    def top_up(self) -> None:
        while len(self.idle) < self._spares and len(self.children) < self._max:
            try:
                self.idle.append(self._spawn(warm=True))
            except OSError as exc:
                log.warning("cannot fork a spare child: %s", exc)
                return

    def hand(self, conn: socket.socket, peer: int) -> bool:
        """Pass `conn` to an idle child, or to one forked now; False when at max_children."""
        if self.idle:
            spare = self.idle.pop(0)
        elif len(self.children) >= self._max:
            return False
        else:
            spare = self._spawn(warm=False)  # a caller is waiting: no warm-up
        try:
            socket.send_fds(spare.line, [struct.pack("=i", peer)], [conn.fileno()])
        finally:
            spare.line.close()
        return True

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            for spare in [s for s in self.idle if s.pid == pid]:
                spare.line.close()
                self.idle.remove(spare)
            if os.WIFSIGNALED(status):
                log.warning("child %d killed by signal %d", pid, os.WTERMSIG(status))

    def close_idle(self) -> None:
        """Idle children see the helper hang up and exit; busy ones finish their request."""
        for spare in self.idle:
            spare.line.close()
        self.idle.clear()


def serve(
    path: str,
    max_children: int = 64,
    request_timeout: float = 300.0,
    spares: int = 2,
    *,
    cni_path: str = DEFAULT_CNI_PATH,
    policy: NodePolicy = DEFAULT_POLICY,
) -> int:
    """Serve until SIGTERM or SIGINT; then remove the socket and let requests in flight finish.
    `cni_path` (os.pathsep-separated) is where requests find their IPAM plugins; `policy` what
    the node allows a request (cni.core.policy)."""
    started = time.monotonic()
    check_folder(path)  # before the slow preload: a wrong folder fails at once
    preload()
    listener = _listen(path)
    inode = os.stat(path).st_ino
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        log.info("signal %d: stopping", signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    listener.settimeout(0.5)
    gc.collect()
    gc.freeze()  # children share the preloaded heap instead of copying it on the first collection
    pool = _Pool(listener, spares, max_children, request_timeout, cni_path=cni_path, policy=policy)
    pool.top_up()
    log.info(
        "serving on %s: pid %d, %d modules preloaded in %.0f ms, %d spare children, "
        "IPAM plugins %s from %s, host links %s, netns in %s%s",
        path,
        os.getpid(),
        len(sys.modules),
        (time.monotonic() - started) * 1000,
        len(pool.idle),
        ",".join(sorted(policy.ipam_plugins or ())),
        cni_path,
        "allowed" if policy.host_links else "refused",
        ", ".join(policy.netns_folders or ()),
        " and /proc/<pid>/ns/net" if policy.proc_netns else "",
    )
    try:
        while not stopping:
            pool.reap()
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                pool.top_up()
                continue
            except OSError as exc:  # e.g. out of file descriptors: callers run in process
                log.warning("accept failed: %s", exc)
                time.sleep(0.1)
                continue
            with conn:
                pid, uid = _peer(conn)
                if uid not in (0, os.geteuid()):
                    log.warning(
                        "refused pid %d: uid %d is neither root nor %d", pid, uid, os.geteuid()
                    )
                    continue
                try:
                    if not pool.hand(conn, pid):
                        log.warning(
                            "busy (%d requests in flight): pid %d runs in process",
                            max_children,
                            pid,
                        )
                except OSError as exc:  # out of processes or memory: this caller runs in process
                    log.warning("no child for pid %d (%s): it runs in process", pid, exc)
            pool.top_up()
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == inode:  # never remove a successor's socket
                os.unlink(path)
        pool.close_idle()
        deadline = time.monotonic() + request_timeout
        while pool.children and time.monotonic() < deadline:
            pool.reap()
            time.sleep(0.05)
        log.info("stopped, %d requests unfinished", len(pool.children))
    return 0
