"""Processes and ports on loopback: find a free port, poll with a deadline, stop a process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from tests.poll import poll


class ClusterError(RuntimeError):
    """The control plane could not be started, reached or found."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID still runs or still holds its resources.

    A finished zombie holds nothing, but a multi-threaded (Go) process shows its leader as a
    zombie while its other threads are still exiting, and its sockets close only when the last
    of them is gone: until then it counts as alive.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            return True
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except FileNotFoundError:
        return False


def terminate_group(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM the process group led by `pid`, SIGKILL it if it outlives `timeout` seconds."""

    def gone() -> bool:
        if proc is not None:
            return proc.poll() is not None
        return not pid_alive(pid)

    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    try:
        poll(gone, timeout, f"pid {pid} to exit after SIGTERM", error=ClusterError)
    except ClusterError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        poll(gone, 10, f"pid {pid} to exit after SIGKILL", error=ClusterError)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # stragglers in the group (none expected)


def http_ok(url: str, context: ssl.SSLContext | None) -> bool:
    """Whether a GET of `url` answers 200 (any connection or TLS failure counts as no)."""
    # Loopback only: an empty ProxyHandler keeps any *_proxy variables out of the way.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(url, timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False
