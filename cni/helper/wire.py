"""The helper's wire format, shared with the C client (cni/helper/client/bond.c).

    request  b"BCNI" u32 version, u32 n, n x (u32 len, b"KEY=VALUE"), u32 len, stdin
    response b"BCNI" u32 version, i32 exit code, u32 len, stdout, u32 len, stderr

Integers are big-endian. One request and one response per connection; the client shuts down its
write side after the request, so a request is read to EOF.

The response's header (b"BCNI" u32 version, HEADER below) is the helper's "started" signal: it is
sent on its own as soon as the request is decoded, before the plugin runs, and the rest follows
when the plugin is done. So a client that reads no whole header knows the request never started
(the helper was absent, busy, stopping, or dropped the request) and runs it in process; one that
reads the header but no whole response knows the plugin ran, or ran part way (its child was
killed), and must not run it again: it reports an error and leaves the cleanup to the runtime's
DEL. A request that runs past the helper's --request-timeout is answered in full: the plugin
unwinds (ADD rolls back) and the answer is CNI error 11 naming the timeout.

A request is at most MAX_REQUEST bytes (the C client's MAX_REQUEST too): with --max-children
requests in flight, that bounds what callers can make the helper hold. A real CNI call (a config
and its prevResult) is a few KiB; the client runs a larger one in process without sending it, and
the helper drops one that arrives anyway, unanswered, so that client too runs it in process.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

MAGIC = b"BCNI"
VERSION = 1
MAX_REQUEST = 1 << 20
MAX_ENV = 4096
_U32 = struct.Struct(">I")
_HEAD = struct.Struct(">4sI")
HEADER = _HEAD.pack(MAGIC, VERSION)  # a response's first bytes, and the "started" signal


class WireError(ValueError):
    """A request or response that is not in the format above."""


@dataclass(frozen=True)
class Request:
    env: Mapping[str, str]
    stdin: bytes


@dataclass(frozen=True)
class Response:
    code: int
    stdout: bytes
    stderr: bytes


def _field(data: bytes, at: int, what: str) -> tuple[bytes, int]:
    if at + 4 > len(data):
        raise WireError(f"{what}: truncated length at byte {at}")
    (size,) = _U32.unpack_from(data, at)
    at += 4
    if at + size > len(data):
        raise WireError(f"{what}: {size} bytes announced, {len(data) - at} left")
    return data[at : at + size], at + size


def _head(data: bytes) -> int:
    if len(data) < _HEAD.size:
        raise WireError(f"{len(data)} bytes: too short for a header")
    magic, version = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise WireError(f"bad magic {magic!r}")
    if version != VERSION:
        raise WireError(f"protocol version {version}, this side speaks {VERSION}")
    return _HEAD.size


def encode_request(env: Mapping[str, str], stdin: bytes) -> bytes:
    parts = [_HEAD.pack(MAGIC, VERSION), _U32.pack(len(env))]
    for key, value in env.items():
        entry = f"{key}={value}".encode(errors="surrogateescape")
        parts += [_U32.pack(len(entry)), entry]
    parts += [_U32.pack(len(stdin)), stdin]
    return b"".join(parts)


def decode_request(data: bytes) -> Request:
    at = _head(data)
    if at + 4 > len(data):
        raise WireError("truncated environment count")
    (count,) = _U32.unpack_from(data, at)
    at += 4
    if count > MAX_ENV:
        raise WireError(f"{count} environment entries, at most {MAX_ENV}")
    env: dict[str, str] = {}
    for _ in range(count):
        entry, at = _field(data, at, "environment entry")
        key, sep, value = entry.decode(errors="surrogateescape").partition("=")
        if not sep or not key:
            raise WireError(f"environment entry {entry[:40]!r} is not KEY=VALUE")
        env[key] = value
    stdin, at = _field(data, at, "stdin")
    if at != len(data):
        raise WireError(f"{len(data) - at} bytes after the request")
    return Request(env, stdin)


def encode_answer(response: Response) -> bytes:
    """The response after its HEADER, which the helper sends first (see above)."""
    return b"".join(
        (
            struct.pack(">i", response.code),
            _U32.pack(len(response.stdout)),
            response.stdout,
            _U32.pack(len(response.stderr)),
            response.stderr,
        )
    )


def encode_response(response: Response) -> bytes:
    return HEADER + encode_answer(response)


def decode_response(data: bytes) -> Response:
    at = _head(data)
    if at + 4 > len(data):
        raise WireError("truncated exit code")
    (code,) = struct.unpack_from(">i", data, at)
    stdout, at = _field(data, at + 4, "stdout")
    stderr, at = _field(data, at, "stderr")
    if at != len(data):
        raise WireError(f"{len(data) - at} bytes after the response")
    return Response(code, stdout, stderr)
