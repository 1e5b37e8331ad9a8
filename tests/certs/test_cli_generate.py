"""`bond-injector certs generate`: files for local development, idempotent, keys kept private."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest

from certs import pki
from certs.cli import main


def test_generate_writes_a_pair_for_the_service_and_an_ip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "certs"
    args = ["generate", "--out-dir", str(out), "--service", "wh", "--service-namespace", "ns"]
    assert main([*args, "--ip", "127.0.0.1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]
    for key in ("ca.key", "tls.key"):
        assert stat.S_IMODE((out / key).stat().st_mode) == 0o600
    ca = pki.KeyPair((out / "ca.crt").read_bytes(), (out / "ca.key").read_bytes())
    serving = pki.KeyPair((out / "tls.crt").read_bytes(), (out / "tls.key").read_bytes())
    names = pki.service_dns_names("wh", "ns")
    verdict = pki.assess(
        ca, serving, dns_names=names, ips=["127.0.0.1"], now=_now(), renew_before=_days(30)
    )
    assert verdict.verdict is pki.Verdict.HEALTHY
    printed = capsys.readouterr()
    assert "wh.ns.svc.cluster.local" in printed.out
    assert "PRIVATE KEY" not in printed.out + printed.err


def test_generate_keeps_a_healthy_set_and_replaces_on_force_or_new_names(tmp_path: Path) -> None:
    base = ["generate", "--out-dir", str(tmp_path), "--dns", "localhost"]
    assert main(base) == 0
    first = (tmp_path / "tls.crt").read_bytes()
    assert main(base) == 0
    assert (tmp_path / "tls.crt").read_bytes() == first
    ca_before = (tmp_path / "ca.crt").read_bytes()
    assert main([*base, "--ip", "127.0.0.1"]) == 0  # a new name: new serving pair, same CA
    assert (tmp_path / "tls.crt").read_bytes() != first
    assert (tmp_path / "ca.crt").read_bytes() == ca_before
    assert main([*base, "--ip", "127.0.0.1", "--force"]) == 0
    assert (tmp_path / "ca.crt").read_bytes() != ca_before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--renew-before", "soon"], "duration 'soon' is not understood"),
        (["--ip", "not-an-ip"], "'not-an-ip'"),  # named; the why is the ipaddress module's words
    ],
)
def test_bad_input_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["generate", "--out-dir", str(tmp_path), "--dns", "x", *args]) == 2
    assert message in capsys.readouterr().err


def test_generate_needs_a_subject(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--out-dir", str(tmp_path)]) == 2
    assert "--service, --dns or --ip" in capsys.readouterr().err


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _days(n: int) -> dt.timedelta:
    return dt.timedelta(days=n)
