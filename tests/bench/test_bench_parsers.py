"""The logic in the benchmarks that is not measurement: reading hey's summary, the VM's case and
failover lines, and telling where the two plugins differ."""

from __future__ import annotations

import pytest

from bench.cni import CaseResult, cases_table, parse_cases, parse_failover
from bench.webhook import parse_hey

HEY_SUMMARY = """
Summary:
  Total:\t10.0031 secs
  Slowest:\t0.0911 secs
  Fastest:\t0.0012 secs
  Average:\t0.0101 secs
  Requests/sec:\t6321.4567

Latency distribution:
  10% in 0.0052 secs
  50%% in 0.0093 secs
  99% in 0.0310 secs

Status code distribution:
  [200]\t63200 responses
  [400]\t3 responses

Error distribution:
  [11]\tPost "https://127.0.0.1:1/mutate": EOF
  [2]\tPost "https://127.0.0.1:1/mutate": read: connection reset by peer
"""


def test_hey_summary_gives_rate_percentiles_and_every_failure() -> None:
    result = parse_hey(HEY_SUMMARY)
    assert result.rps == pytest.approx(6321.4567)
    assert result.p50_ms == pytest.approx(9.3)
    assert result.p99_ms == pytest.approx(31.0)
    assert result.requests == 63200 + 3 + 11 + 2
    assert result.errors == 3 + 11 + 2  # non-200 answers and transport errors
    assert result.first_error.endswith("EOF")


def test_hey_with_few_answers_gives_the_slowest_as_p99() -> None:
    few = HEY_SUMMARY.replace("  99% in 0.0310 secs\n", "  0%% in 0.0000 secs\n")
    assert parse_hey(few).p99_ms == pytest.approx(91.1)


def test_hey_without_a_summary_is_an_error_not_zeroes() -> None:
    with pytest.raises(RuntimeError, match="no summary"):
        parse_hey("Error: connection refused\n")


def test_case_lines_are_grouped_and_differences_named() -> None:
    output = "\n".join(
        [
            "case|DEL twice|helper|0,0,0|-|-|nothing",
            "case|DEL twice|bondcni|0,0,0|-|-|nothing",
            "case|IPAM failing|helper|1|11|host-local failed|nothing",
            "case|IPAM failing|bondcni|1|999|invalid CIDR|bond: bond0,enslaved: net1 net2",
            "case|cut short",
        ]
    )
    cases = parse_cases(output)
    assert cases["IPAM failing"]["bondcni"] == CaseResult(
        "1", "999", "invalid CIDR", "bond: bond0,enslaved: net1 net2"
    )
    rows = cases_table(cases).splitlines()
    assert rows[2].startswith("| DEL twice |") and rows[2].endswith("| - |")
    assert rows[3].endswith("| code, left_behind |")


def test_failover_lines_count_lost_pings() -> None:
    found = parse_failover("failover helper 100 600 589 net1 net2\nfailover x\n")
    assert found["helper", 100].lost == 11
    assert found["helper", 100].active_after == "net2"
