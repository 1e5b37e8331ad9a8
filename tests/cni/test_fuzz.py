"""Property tests (hypothesis) of what the plugin and its helper take from outside: the network
config on stdin, the CNI_* environment, and the helper's wire format. Whatever arrives, the
answer is a CNI error JSON naming the problem, or a refusal: never a traceback, never an
"internal error" (that branch is for faults no check anticipates, see test_main.py).

No kernel is touched: CNI_NETNS points at a path that does not exist and CNI_PATH at an empty
directory, so a config that passes every check stops at "cannot open netns".
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from cni.core import config, options, result
from cni.core.errors import CNIError
from cni.core.spec import SUPPORTED_VERSIONS
from cni.helper import wire
from cni.kernel import rtnl
from cni.plugin.dispatch import invoke
from tests.cni.conftest import require
from tests.cni.helper_rig import BOND, Helper, running_helper

ARP_TARGETS = ["192.0.2.1", "0.0.0.0", "::1", 5]  # noqa: S104 - an ARP target, never bound
SPEC_CODES = {1, 2, 3, 4, 5, 6, 7, 11, 50, 51, 100}
NOWHERE = "/run/bond-cni-fuzz/no-such-netns"  # never created: no test here reaches a kernel
FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


wrong_values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=5)
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)


def _field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A config field: usually plausible, sometimes of another type or shape."""
    return st.one_of(valid, valid, wrong_values)


ifnames = st.sampled_from(["net1", "net2", "net1", "net2", "net3", "bond0", "", "a:b", "x" * 16])


def _configs(field: Callable[[st.SearchStrategy[Any]], st.SearchStrategy[Any]]) -> Any:
    return st.fixed_dictionaries(
        {
            "cniVersion": st.sampled_from([*SUPPORTED_VERSIONS, "0.2.0", 1.0]),
            "links": field(
                st.just([{"name": "net1"}, {"name": "net2"}])
                | st.lists(st.fixed_dictionaries({"name": ifnames}), max_size=4)
            ),
        },
        optional={
            "name": field(st.text(max_size=10)),
            "type": st.just("bond"),
            "mode": field(st.sampled_from([*options.MODES, "fast"]) | st.integers(-1, 8)),
            "miimon": field(st.sampled_from([0, 50, 100, "100", "x", -1])),
            "updelay": field(st.sampled_from([0, 100, 150, "200"])),
            "downdelay": field(st.sampled_from([0, 100, 150])),
            "arpInterval": field(st.sampled_from([0, 200])),
            "arpIpTargets": field(st.lists(st.sampled_from(ARP_TARGETS))),
            "arpValidate": field(st.sampled_from([*options.ARP_VALIDATE, 9])),
            "arpAllTargets": field(st.sampled_from([*options.ARP_ALL_TARGETS, 2])),
            "failOverMac": field(st.sampled_from([0, 1, 2, 3, "active"])),
            "xmitHashPolicy": field(st.sampled_from([*options.XMIT_HASH_POLICY, "layer5"])),
            "lacpRate": field(st.sampled_from(["slow", "fast", 1])),
            "adSelect": field(st.sampled_from(["stable", "count", 3])),
            "primary": field(ifnames),
            "primaryReselect": field(st.sampled_from([*options.PRIMARY_RESELECT, 4])),
            "minLinks": field(st.integers(-1, 3)),
            "allSlavesActive": field(st.sampled_from([0, 1, True, 2])),
            "tlbDynamicLb": field(st.sampled_from([0, 1])),
            "mtu": field(st.sampled_from([0, "0", 1500, 9000, 40, 70000])),
            "linksInContainer": field(st.booleans()),
            "allowHostLinks": field(st.booleans()),
            "nicDiversity": field(st.sampled_from(options.POLICIES)),
            "haChecks": field(st.sampled_from(options.POLICIES)),
            "ipam": field(st.fixed_dictionaries({"type": st.sampled_from(["host-local", "a/b"])})),
            "dns": field(st.fixed_dictionaries({"nameservers": st.lists(st.text(max_size=8))})),
            "runtimeConfig": field(
                st.fixed_dictionaries(
                    {"mac": st.sampled_from(["02:00:00:00:00:01", "01:00:00:00:00:01", "zz"])}
                )
            ),
            "prevResult": field(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "interfaces": field(st.lists(st.fixed_dictionaries({"name": ifnames}))),
                        "ips": field(
                            st.lists(
                                st.fixed_dictionaries(
                                    {"address": st.sampled_from(["10.0.0.1/24", "x", "::1/64"])},
                                    optional={"interface": st.integers(-1, 3)},
                                )
                            )
                        ),
                        "routes": field(st.lists(st.fixed_dictionaries({"dst": json_values}))),
                    },
                )
            ),
            # logFile: never an absolute path here, or a run would append to files of this host.
            "logFile": field(st.text(max_size=10).filter(lambda t: not t.startswith("/"))),
        },
    )


# Configs with fields of any shape, and configs whose fields all have the right type (which get
# past the type checks to the rules between fields, and to the netns).
bond_configs = st.one_of(_configs(_field), _configs(lambda valid: valid))


@pytest.fixture(scope="module")
def cni_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": NOWHERE,
        "CNI_IFNAME": "bond0",
        "CNI_PATH": str(tmp_path_factory.mktemp("empty-cni-path")),
    }


def _assert_clean(code: int, out: bytes, err: bytes) -> dict[str, Any] | None:
    """An answer as the spec wants it: exit 0 with a result or nothing, or exit 1 with an error
    JSON whose code is one of the spec's (or ours, 100) and whose message says something."""
    text = err.decode()
    assert "Traceback" not in text and "internal error" not in text, text
    if code == 0:
        return json.loads(out) if out.strip() else None
    assert code == 1
    error = json.loads(out)
    assert set(error) == {"cniVersion", "code", "msg", "details"}
    assert error["code"] in SPEC_CODES and error["msg"]
    assert error["cniVersion"] in SUPPORTED_VERSIONS
    assert "bond-cni ERROR" in text
    return dict(error)


@FUZZ
@given(stdin=st.binary(max_size=300))
@example(stdin=b"[" * 100_000 + b"]" * 100_000)  # nested deeper than Python's recursion limit
@example(stdin=b"\xff\xfe{\x00}\x00")
def test_any_stdin_is_an_error_json(cni_env: dict[str, str], stdin: bytes) -> None:
    code, out, err = invoke({**cni_env, "CNI_COMMAND": "ADD"}, stdin)
    error = _assert_clean(code, out, err)
    assert error is not None and error["code"] in (1, 6, 7), error


@FUZZ
@given(conf=bond_configs)
def test_any_config_is_refused_with_a_named_field_or_reaches_the_netns(
    cni_env: dict[str, str], conf: dict[str, Any]
) -> None:
    code, out, err = invoke({**cni_env, "CNI_COMMAND": "ADD"}, json.dumps(conf).encode())
    error = _assert_clean(code, out, err)
    assert error is not None
    event(f"error {error['code']}")
    if error["code"] == 100:  # every check passed: the plugin went for the pod's netns
        assert error["msg"] == f"cannot open netns {NOWHERE}", error
    elif error["code"] == 7:
        assert "field" in error["msg"] or "IPAM" in error["msg"], error


@FUZZ
@given(conf=bond_configs)
def test_whatever_the_parser_accepts_the_codec_encodes(conf: dict[str, Any]) -> None:
    try:
        parsed = config.parse(conf, "bond0")
    except CNIError as exc:
        assert exc.code == 7 and exc.msg.startswith("invalid bond config field '")
        return
    values = dict(parsed.options.kernel_values())
    if "primary" in values:
        values["primary"] = 5  # the executor passes the primary's link index
    rtnl.new_bond("bond0", values, parsed.mtu, parsed.mac)


@FUZZ
@given(data=json_values, version=st.sampled_from(SUPPORTED_VERSIONS))
def test_any_prev_result_parses_or_is_error_6(data: Any, version: str) -> None:
    try:
        parsed = result.parse(data if isinstance(data, dict) else {"ips": data})
    except CNIError as exc:
        assert exc.code == 6
        return
    parsed.render(version)


env_values = st.text(max_size=20) | st.sampled_from(["ADD", "DEL", "CHECK", "VERSION", "GC"])


@FUZZ
@given(
    env=st.dictionaries(
        st.sampled_from(["CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH", "CNI_ARGS"])
        | st.text(max_size=8),
        env_values,
        max_size=6,
    ),
    netns=st.text(max_size=20).filter(lambda t: not t.startswith("/")) | st.just(NOWHERE),
    level=st.sampled_from(["", "DEBUG", "info", "chatty"]),
)
def test_any_environment_is_answered_by_the_spec(
    env: dict[str, str], netns: str, level: str
) -> None:
    conf = {"cniVersion": "1.1.0", "name": "n", "links": [{"name": "net1"}, {"name": "net2"}]}
    full = {**env, "CNI_NETNS": netns, "BOND_CNI_LOG_LEVEL": level}
    _assert_clean(*invoke(full, json.dumps(conf).encode()))


# The helper's wire format.

requests = st.builds(
    wire.encode_request,
    st.dictionaries(st.text(min_size=1).filter(lambda k: "=" not in k), st.text(), max_size=5),
    st.binary(max_size=64),
)


@FUZZ
@given(env=st.dictionaries(st.text(min_size=1).filter(lambda k: "=" not in k), st.text()))
def test_every_request_round_trips(env: dict[str, str]) -> None:
    stdin = json.dumps(env).encode()
    assert wire.decode_request(wire.encode_request(env, stdin)) == wire.Request(env, stdin)


@FUZZ
@given(raw=st.binary(max_size=200) | requests, cut=st.integers(0, 200), flip=st.integers(0, 255))
def test_any_bytes_decode_or_are_refused(raw: bytes, cut: int, flip: int) -> None:
    mangled = bytearray(raw[: max(cut, 8)])
    if mangled:
        mangled[cut % len(mangled)] ^= flip
    for data in (raw, bytes(mangled)):
        for decode in (wire.decode_request, wire.decode_response):
            with contextlib.suppress(wire.WireError):
                decode(data)


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Helper]:
    require(BOND, "run `make build` (./build.sh)")
    sock = tmp_path_factory.mktemp("fuzz") / "run" / "helper.sock"
    # No IPAM plugin to run, through the helper as in process (cni_env's CNI_PATH is empty too).
    empty = str(tmp_path_factory.mktemp("empty-helper-cni-path"))
    with running_helper(sock, "--cni-path", empty) as running:
        yield running


def _exchange(path: Path, raw: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(60)
        conn.connect(str(path))
        conn.sendall(raw)
        conn.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@settings(max_examples=40, deadline=None)
@given(raw=st.binary(max_size=100) | requests)
def test_the_helper_answers_or_hangs_up_on_any_bytes(helper: Helper, raw: bytes) -> None:
    """The real helper (bin/bond serve): a request it can decode gets the plugin's answer, any
    other bytes get the connection closed with nothing (the client then runs in process)."""
    answer = _exchange(helper.socket, raw)
    try:
        request = wire.decode_request(raw)
    except wire.WireError:
        assert answer == b""
    else:
        response = wire.decode_response(answer)
        _assert_clean(response.code, response.stdout, response.stderr)
        assert request.env.get("CNI_COMMAND") != "VERSION" or response.code == 0


def test_the_helper_lives_on_after_fuzzing(helper: Helper) -> None:
    answer = wire.decode_response(
        _exchange(helper.socket, wire.encode_request({"CNI_COMMAND": "VERSION"}, b""))
    )
    assert answer.code == 0 and json.loads(answer.stdout)["cniVersion"] == "1.1.0"
    assert "Traceback" not in helper.log()
