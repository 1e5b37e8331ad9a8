"""Boot Debian's stock kernel (which has the bonding module) over the host's root filesystem.

virtme-ng (`vng`) runs qemu under TCG: with KVM the Debian kernel hangs on our machines. The guest
sees the host's files read-only over 9p, except `rwdir`, which it can write.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

DEFAULT_MEMORY = "2G"
DEFAULT_CPUS = 2
# qemu's user network, as the guest sees it: its own address, and the address at which `guestfwd`
# hands the guest's connections to a command on the host (a socat to the host's kube-apiserver).
GUEST_IP = "10.0.2.15"
API_FROM_GUEST = "10.0.2.100"
_VERSION_PART = re.compile(r"(\d+)")


class VmError(RuntimeError):
    """The VM could not be started, or did not finish in time."""


@dataclass(frozen=True)
class Kernel:
    version: str  # e.g. "6.1.0-56-amd64"
    image: Path  # /boot/vmlinuz-<version>


@dataclass(frozen=True)
class VmRun:
    returncode: int
    output: str  # the guest command's stdout and stderr, interleaved, plus vng's own messages
    seconds: float  # wall time on the host, boot and shutdown included


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in _VERSION_PART.findall(version))


def find_kernel(boot: Path = Path("/boot"), modules: Path = Path("/lib/modules")) -> Kernel:
    """The newest /boot/vmlinuz-<ver> whose /lib/modules/<ver> has the bonding module."""
    candidates = []
    for image in boot.glob("vmlinuz-*"):
        version = image.name.removeprefix("vmlinuz-")
        if any((modules / version).glob("kernel/drivers/net/bonding/bonding.ko*")):
            candidates.append(Kernel(version, image))
    if not candidates:
        raise VmError(
            f"no kernel in {boot} has a bonding module under {modules}/<version>; "
            "run `make deps` (tools/ensure-apt.sh installs linux-image-amd64)"
        )
    return max(candidates, key=lambda k: _version_key(k.version))


def tool_path() -> str:
    """PATH with this interpreter's bin dir first: vng runs `virtme-run` from PATH."""
    return os.pathsep.join([str(Path(sys.prefix) / "bin"), os.environ.get("PATH", os.defpath)])


def _require(tool: str, path: str, why: str) -> str:
    found = shutil.which(tool, path=path)
    if found is None:
        raise VmError(f"{tool} not found ({why}); run `make deps`")
    return found


def vng_command(
    kernel: Kernel,
    command: str,
    *,
    rwdir: Path,
    memory: str,
    cpus: int,
    path: str,
    qemu_opts: str | None = None,
) -> list[str]:
    vng = _require("vng", path, "virtme-ng, a dev dependency in .venv")
    _require("virtme-run", path, "installed with virtme-ng")
    _require("qemu-system-x86_64", path, "apt package qemu-system-x86")
    return [
        vng,
        "--run",
        str(kernel.image),
        "--disable-kvm",  # with KVM the Debian kernel hangs on these machines
        "--user",
        "root",
        "--cwd",
        str(rwdir),
        "--rwdir",
        str(rwdir),
        "--memory",
        memory,
        "--cpus",
        str(cpus),
        *([f"--qemu-opts={qemu_opts}"] if qemu_opts else []),
        "--exec",
        command,
    ]


def run_in_vm(
    command: str,
    *,
    rwdir: Path,
    timeout: float,
    log: Path | None = None,
    memory: str = DEFAULT_MEMORY,
    cpus: int = DEFAULT_CPUS,
    kernel: Kernel | None = None,
    qemu_opts: str | None = None,
) -> VmRun:
    """Boot one VM, run `command` with sh in `rwdir` as root, return its exit code and output.

    The output goes to `log` as it comes (so a long run can be followed with `tail -f`).
    """
    path = tool_path()
    argv = vng_command(
        kernel or find_kernel(),
        command,
        rwdir=rwdir,
        memory=memory,
        cpus=cpus,
        path=path,
        qemu_opts=qemu_opts,
    )
    return _run(argv, env={**os.environ, "PATH": path}, cwd=rwdir, timeout=timeout, log=log)


def run_on_host(command: str, *, cwd: Path, timeout: float, log: Path | None = None) -> VmRun:
    """Run the same command with sh on the host: for hosts whose own kernel can bond."""
    return _run(["sh", "-c", command], env=dict(os.environ), cwd=cwd, timeout=timeout, log=log)


def _run(
    argv: list[str], *, env: dict[str, str], cwd: Path, timeout: float, log: Path | None
) -> VmRun:
    log_path = log or cwd / ".cache" / "kernel-rig" / "vm.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # A pipe, not a file: qemu reopens /proc/self/fd/1 and /fd/2, and each reopened file would
    # write from offset 0 over the others. A session of its own, so that a timeout can stop vng,
    # virtme-run and qemu together.
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    chunks: list[bytes] = []
    copier = threading.Thread(target=_copy, args=(proc.stdout, log_path, chunks), daemon=True)
    copier.start()
    try:
        returncode = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        copier.join(timeout=30)
        tail = b"".join(chunks).decode(errors="replace")[-4000:]
        raise VmError(
            f"`{' '.join(argv[:3])} ...` did not finish within {timeout:.0f} s; "
            f"log {log_path}, its end:\n{tail}"
        ) from None
    finally:
        _stop(proc)  # interrupted (Ctrl-C): leave no qemu running
    copier.join(timeout=30)  # a guest child still holding the pipe must not hang the run
    return VmRun(returncode, b"".join(chunks).decode(errors="replace"), time.monotonic() - started)


def _copy(source: IO[bytes], log_path: Path, chunks: list[bytes]) -> None:
    """Copy the VM's output to the log as it comes, and keep it."""
    with source, log_path.open("wb") as log:
        for chunk in iter(lambda: os.read(source.fileno(), 65536), b""):
            chunks.append(chunk)
            log.write(chunk)
            log.flush()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill the session we started (vng, virtme-run, qemu) if its leader still runs."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def api_forward(api_port: int, script: Path) -> str:
    """qemu options for a user network on which the guest reaches the host's 127.0.0.1:`api_port`
    (a kube-apiserver) at API_FROM_GUEST:`api_port`, and nothing else (`restrict=on`).

    qemu runs `script` once per connection, its stdio being the connection (a chardev would serve
    one connection at a time); the script, written here, is a socat to the port. The guest brings
    up its NIC itself: `ip addr add GUEST_IP/24 dev <nic>`.
    """
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f"#!/bin/sh\nexec socat - TCP:127.0.0.1:{api_port}\n")
    script.chmod(0o755)
    return (
        f"-netdev user,id=api0,restrict=on,"
        f"guestfwd=tcp:{API_FROM_GUEST}:{api_port}-cmd:{script} "
        "-device virtio-net-pci,netdev=api0"
    )


def main() -> int:
    """`python -m tests.rigs.vm [--api-port N] 'CMD'`: run CMD as root in the VM, in the current
    directory; with --api-port the guest reaches the host's 127.0.0.1:N at API_FROM_GUEST:N."""
    parser = argparse.ArgumentParser(prog="python -m tests.rigs.vm", description=main.__doc__)
    parser.add_argument("--api-port", type=int, help="forward API_FROM_GUEST:PORT to the host")
    parser.add_argument("--timeout", type=float, default=900, help="seconds (default 900)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = " ".join(args.command) or "uname -r; modprobe bonding && echo bonding loaded"
    opts = None
    if args.api_port:
        opts = api_forward(args.api_port, Path.cwd() / ".cache" / "kernel-rig" / "apiserver-fwd")
    run = run_in_vm(command, rwdir=Path.cwd(), timeout=args.timeout, qemu_opts=opts)
    sys.stdout.write(run.output)
    sys.stderr.write(f"vm: exit {run.returncode} after {run.seconds:.1f} s\n")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
