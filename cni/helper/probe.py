"""`bond probe`: is a helper answering at this socket? (the DaemonSet's readiness and liveness)"""

from __future__ import annotations

import json
import socket
import sys

from cni.helper import wire
from cni.helper.server import read_to_eof


def probe(path: str, timeout: float) -> int:
    """Exit 0 when a helper answers VERSION at `path`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(path)
            conn.sendall(wire.encode_request({"CNI_COMMAND": "VERSION"}, b""))
            conn.shutdown(socket.SHUT_WR)
            response = wire.decode_response(read_to_eof(conn, wire.MAX_REQUEST))
        versions = json.loads(response.stdout)["supportedVersions"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"bond-cni helper at {path}: no answer: {exc}", file=sys.stderr)
        return 1
    if response.code != 0:
        print(f"bond-cni helper at {path}: VERSION exit {response.code}", file=sys.stderr)
        return 1
    print(f"bond-cni helper at {path} answers, CNI versions {' '.join(versions)}")
    return 0
