"""10,000 malformed bodies at POST /mutate of the real ASGI app: no 5xx, nothing logged.

A seeded generator (so a failure replays): well-formed reviews with a field replaced by any JSON
value, removed or doubled; their bytes flipped, cut, spliced or padded; and plain noise.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import jsonpatch
import orjson
import pytest
from starlette.types import Message

from tests.webhook.asgi import response_of
from tests.webhook.builders import (
    EXAMPLES,
    USER_NETWORK,
    example_nads,
    many_legs_nads,
    many_legs_profiles,
    pod,
    vfs,
)
from tests.webhook.reviews import review
from webhook.app import Settings, WebhookApp, create_app
from webhook.nads import StaticNadSource

CASES = 10_000
SEED = 20261130

SEEDS: list[dict[str, Any]] = [
    review(pod()),
    review(pod(namespace="team"), namespace=""),
    review(pod(networks=[USER_NETWORK], annotations={"bond-injector.io/profile": "legs-3"})),
    review(pod(annotations={"bond-injector.io/profile": "legs-4"}, networks="data-net@data0")),
    review(pod(containers=[{"name": "app", "resources": vfs(2, 1, requests={"cpu": "1"})}])),
    review(pod(labels={"app": "web"})),
    review(pod(), operation="UPDATE"),
]
TEXT = ["", "bond", "true", "default", "net1", "a/b@c", "[", "{}", "é", "\u202e", "\x00", "~1/"]


class _Problems(logging.Handler):
    """Every record at WARNING or above, or carrying a traceback, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING or record.exc_info:
            self.records.append(record)


@pytest.fixture
def problems() -> Iterator[_Problems]:
    handler = _Problems()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def _value(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value, including the awkward ones."""
    kind = rng.randrange(10 if depth < 3 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**63 - 1, -(2**63), 10**30, 1.5, -0.0, 1e308])
    if kind in (3, 4, 5, 6):
        return rng.choice(TEXT) * rng.choice([1, 1, 2, 300])
    if kind == 7:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 8:
        return {rng.choice(TEXT): _value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return {"name": rng.choice(["sriov-pf-a", "bond-4", "x"]), "interface": rng.choice(TEXT)}


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _paths(child, (*prefix, index))


def _structural(rng: random.Random) -> bytes:
    doc = copy.deepcopy(rng.choice(SEEDS))
    for _ in range(rng.choice([1, 1, 2, 3])):
        path = rng.choice(list(_paths(doc)))
        if not path:
            doc = _value(rng)
            continue
        parent: Any = doc
        for key in path[:-1]:
            parent = parent[key]
        action = rng.randrange(4)
        if action == 0:
            del parent[path[-1]]
        elif action == 1 and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
        elif action == 1 and isinstance(parent[path[-1]], str):
            parent[path[-1]] = json.dumps(_value(rng))  # a string holding JSON: annotations
        else:
            parent[path[-1]] = _value(rng)
    return json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode()


def _bytes(rng: random.Random) -> bytes:
    data = bytearray(json.dumps(rng.choice(SEEDS)).encode())
    for _ in range(rng.choice([1, 2, 4, 16])):
        if not data:
            break
        at = rng.randrange(len(data))
        action = rng.randrange(5)
        if action == 0:
            data[at] = rng.randrange(256)
        elif action == 1:
            del data[at : at + rng.randrange(1, 40)]
        elif action == 2:
            data[at:at] = rng.choice([b"\xff", b"\xc3(", b"\\ud800", b'"', b"{", b"]", b"\x00"])
        elif action == 3:
            data = data[:at]
        else:
            end = at + rng.randrange(1, 60)
            data[at:at] = data[at:end]
    return bytes(data)


def _noise(rng: random.Random) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:
        return rng.randbytes(rng.randrange(200))
    if choice == 1:
        return (b"[" * rng.randrange(1, 3000)) + (b"]" * rng.randrange(3000))
    if choice == 2:
        return b"\xef\xbb\xbf" + json.dumps(rng.choice(SEEDS)).encode()  # a BOM
    return json.dumps(_value(rng)).encode()


def bodies(count: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data
    for _ in range(count):
        yield rng.choices([_structural, _bytes, _noise], weights=[6, 3, 1])[0](rng)


async def _post(
    app: WebhookApp, body: bytes, content_type: bytes = b"application/json"
) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/mutate",
        "headers": [(b"content-type", content_type)],
    }
    messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return response_of(sent)


def _check(body: bytes, status: int, answer: bytes, outcomes: dict[str, int]) -> None:
    where = f"body {body[:300]!r}"
    assert status in (200, 400), f"{where}: HTTP {status} {answer[:300]!r}"
    reply = orjson.loads(answer)
    if status == 400:
        outcomes["invalid"] += 1
        assert isinstance(reply["error"], str) and "Traceback" not in reply["error"]
        return
    sent = orjson.loads(body)
    response = reply["response"]
    assert response["uid"] == sent["request"]["uid"], where
    if not response["allowed"]:
        outcomes["denied"] += 1
        assert response["status"]["code"] == 403, f"{where}: {response}"
        return
    if "patch" not in response:
        outcomes["allowed"] += 1
        return
    outcomes["patched"] += 1
    ops = orjson.loads(base64.b64decode(response["patch"]))
    jsonpatch.apply_patch(sent["request"]["object"], ops)  # raises if it does not apply


def _app(tmp_path: Path) -> WebhookApp:
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(
        (EXAMPLES / "profiles.yaml").read_text() + many_legs_profiles(3, 4).split("\n", 1)[1]
    )
    nads = StaticNadSource([*example_nads(), *many_legs_nads()])
    return create_app(Settings(profiles=profiles, max_body_bytes=256 * 1024), nads)


def test_ten_thousand_malformed_bodies(tmp_path: Path, problems: _Problems) -> None:
    app = _app(tmp_path)
    outcomes = {"invalid": 0, "denied": 0, "allowed": 0, "patched": 0}

    async def run() -> None:
        for body in bodies(CASES, SEED):
            status, answer = await _post(app, body)
            _check(body, status, answer, outcomes)

    anyio.run(run)
    assert not problems.records, [r.getMessage()[:300] for r in problems.records[:5]]
    # The generator reaches every branch, so the run above means something.
    assert all(count > 100 for count in outcomes.values()), outcomes


def test_odd_content_types_are_refused(tmp_path: Path, problems: _Problems) -> None:
    app = _app(tmp_path)
    rng = random.Random(SEED)  # noqa: S311 - reproducible test data
    body = json.dumps(SEEDS[0]).encode()

    async def run() -> None:
        for _ in range(500):
            content_type = rng.randbytes(rng.randrange(1, 40))
            status, answer = await _post(app, body, content_type)
            assert status == 415, (content_type, status)
            assert orjson.loads(answer)["error"].startswith("Content-Type must be")

    anyio.run(run)
    assert not problems.records
