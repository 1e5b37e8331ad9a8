from __future__ import annotations

import json

import pytest

from webhook.annotation import (
    AnnotationError,
    NetworkSelection,
    check_interface_name,
    parse_networks,
    serialise_networks,
)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("", []),
        ("  ", []),
        ("a", [NetworkSelection("a")]),
        ("ns/a", [NetworkSelection("a", "ns")]),
        (
            "ns/a@eth1, b@net2",
            [NetworkSelection("a", "ns", "eth1"), NetworkSelection("b", None, "net2")],
        ),
        (" a , a ", [NetworkSelection("a"), NetworkSelection("a")]),  # twice means two attachments
        ('[{"name":"a","namespace":"ns","interface":"x"}]', [NetworkSelection("a", "ns", "x")]),
        ('[{"name":"a","interface":""}]', [NetworkSelection("a")]),
        ("[]", []),
    ],
)
def test_parse(text: str, want: list[NetworkSelection]) -> None:
    assert parse_networks(text) == want


def test_json_entries_round_trip_with_every_field() -> None:
    entry = {
        "name": "a",
        "namespace": "ns",
        "interface": "net9",
        "mac": "02:00:00:00:00:09",
        "ips": ["10.0.0.9/24"],
        "default-route": ["10.0.0.1"],
        "cni-args": {"k": "v"},
        "example.com/extension": True,
    }
    parsed = parse_networks(json.dumps([entry]))
    assert json.loads(serialise_networks(parsed)) == [entry]


def test_short_entries_serialise_to_json_objects() -> None:
    assert json.loads(serialise_networks(parse_networks("ns/a@x,b"))) == [
        {"name": "a", "namespace": "ns", "interface": "x"},
        {"name": "b"},
    ]


@pytest.mark.parametrize(
    "text",
    ["a/b/c", "a@b@c", "/a", "a@", "@x", "a b", "[", '{"name":"a"}', "[1]", '[{"name":""}]',
     '[{"name":"a","namespace":7}]', '[{"name":"a","interface":7}]', "a@x/y"],
)  # fmt: skip
def test_invalid(text: str) -> None:
    with pytest.raises(AnnotationError):
        parse_networks(text)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("net1", None),
        ("a" * 15, None),
        ("a" * 16, "is longer than 15 characters"),
        ("", "is empty"),
        ("a/b", "contains '/'"),
        ("a\tb", "contains whitespace"),
        ("..", "is '.' or '..'"),
        ("net:1", "contains ':'"),  # the kernel (and the CNI) refuse it: deny at admission
        ("net%d", "contains '%'"),
        ("n\u00e9t\u00e9" * 2 + "abcdefg", "is 19 bytes in UTF-8, longer than the kernel's 15"),
    ],
)
def test_interface_names(name: str, problem: str | None) -> None:
    assert check_interface_name(name) == problem
