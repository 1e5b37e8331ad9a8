"""The helper's wire format: what the C client writes, the helper reads, and back."""

from __future__ import annotations

import struct

import pytest

from cni.helper import wire


def test_request_round_trip() -> None:
    env = {"CNI_COMMAND": "ADD", "CNI_ARGS": "K8S_POD_NAME=a=b;X=1", "EMPTY": ""}
    stdin = b'{"cniVersion": "1.1.0"}' + bytes(range(256))
    assert wire.decode_request(wire.encode_request(env, stdin)) == wire.Request(env, stdin)


def test_response_round_trip() -> None:
    response = wire.Response(-3, b"out\x00put", b"err")
    assert wire.decode_response(wire.encode_response(response)) == response


def test_request_layout_is_the_clients() -> None:
    """Byte for byte what cni/client/bond.c sends for one variable and a two-byte stdin."""
    raw = wire.encode_request({"A": "1"}, b"{}")
    assert raw == b"BCNI" + struct.pack(">III", 1, 1, 3) + b"A=1" + struct.pack(">I", 2) + b"{}"


GOOD = wire.encode_request({"CNI_COMMAND": "DEL"}, b"{}")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "too short"),
        (b"XXXX" + GOOD[4:], "bad magic"),
        (GOOD[:4] + struct.pack(">I", 2) + GOOD[8:], "protocol version 2"),
        (GOOD[:10], "truncated environment count"),
        (GOOD[:-1], "stdin: 2 bytes announced, 1 left"),
        (GOOD + b"!", "1 bytes after the request"),
        (GOOD[:8] + struct.pack(">I", wire.MAX_ENV + 1), "at most"),
        (wire.encode_request({}, b"")[:8] + struct.pack(">II", 1, 3) + b"abc", "not KEY=VALUE"),
    ],
)
def test_malformed_requests_are_refused(raw: bytes, fragment: str) -> None:
    with pytest.raises(wire.WireError, match=fragment):
        wire.decode_request(raw)


def test_malformed_responses_are_refused() -> None:
    good = wire.encode_response(wire.Response(0, b"{}", b""))
    with pytest.raises(wire.WireError, match="stderr: truncated length"):
        wire.decode_response(good[:-1])
    with pytest.raises(wire.WireError, match="after the response"):
        wire.decode_response(good + b"x")
    with pytest.raises(wire.WireError, match="truncated exit code"):
        wire.decode_response(good[:10])


def test_a_response_begins_with_the_header_sent_as_the_started_signal() -> None:
    response = wire.Response(0, b"{}", b"")
    assert wire.encode_response(response) == wire.HEADER + wire.encode_answer(response)
    assert wire.decode_response(wire.HEADER + wire.encode_answer(response)) == response
