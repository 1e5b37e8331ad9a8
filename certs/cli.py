"""`bond-injector certs`: certificates for the webhook, on files or in a cluster.

generate  write a CA and a serving pair into a directory (local development)
ensure    keep the Secrets healthy and the webhook configuration's caBundle current (hook Job)
rotate    force a new serving certificate now (and a new CA with --new-ca)
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from certs import pki

_IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_FILES = ("ca.crt", "ca.key", "tls.crt", "tls.key")


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="certs: %(message)s", stream=sys.stderr)
    try:
        if args.command == "generate":
            return _generate(args)
        return _in_cluster(args, rotate=args.command == "rotate")
    except ValueError as exc:
        print(f"certs: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # an API or I/O failure: say what failed, without a traceback
        print(f"certs {args.command} failed: {_describe(exc)}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bond-injector certs", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser(
        "generate", help="write ca.crt, ca.key, tls.crt and tls.key into a directory"
    )
    gen.add_argument("--out-dir", type=Path, required=True)
    _add_names(gen)
    gen.add_argument("--force", action="store_true", help="replace everything, the CA too")
    gen.add_argument(
        "--rotate", action="store_true", help="issue a new serving pair now, keeping the CA"
    )
    _add_validity(gen)

    for name, text in (
        (
            "ensure",
            "create or renew the Secrets and patch caBundle; a healthy Secret is left alone",
        ),
        ("rotate", "issue a new serving certificate now, keeping the CA unless --new-ca"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--kubeconfig", type=Path, help="default: the pod's service account")
        cmd.add_argument("--context")
        cmd.add_argument("--namespace", help="default: the pod's namespace, else 'default'")
        cmd.add_argument(
            "--secret", required=True, help="the serving Secret; the CA goes to <secret>-ca"
        )
        cmd.add_argument("--webhook-config", help="the MutatingWebhookConfiguration to patch")
        cmd.add_argument(
            "--webhook",
            action="append",
            default=[],
            help="a webhook name inside it to patch (repeatable; default: all)",
        )
        _add_names(cmd)
        _add_validity(cmd)
        if name == "rotate":
            cmd.add_argument("--new-ca", action="store_true", help="replace the CA as well")
    return parser


def _add_names(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--service",
        help="a Service name: adds <svc>, <svc>.<ns>, <svc>.<ns>.svc, <svc>.<ns>.svc.<domain>",
    )
    cmd.add_argument("--service-namespace", help="the Service's namespace (default: --namespace)")
    cmd.add_argument("--cluster-domain", default="cluster.local")
    cmd.add_argument("--dns", action="append", default=[], help="an extra DNS name (repeatable)")
    cmd.add_argument("--ip", action="append", default=[], help="an IP address SAN (repeatable)")


def _add_validity(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--renew-before", default="30d", help="renew when less is left (e.g. 30d)")
    cmd.add_argument("--validity", default="365d", help="serving certificate lifetime")
    cmd.add_argument("--ca-validity", default="3650d", help="CA lifetime")


def _names(args: argparse.Namespace, namespace: str | None) -> tuple[list[str], list[str]]:
    dns: list[str] = []
    if args.service:
        service_ns = args.service_namespace or namespace
        if not service_ns:
            raise ValueError("--service needs --service-namespace")
        dns += pki.service_dns_names(args.service, service_ns, args.cluster_domain)
    dns += [n for n in args.dns if n not in dns]
    ips: list[str] = list(dict.fromkeys(args.ip))
    if not dns and not ips:
        raise ValueError("name the certificate's subjects with --service, --dns or --ip")
    return dns, ips


def _generate(args: argparse.Namespace) -> int:
    dns, ips = _names(args, args.service_namespace)
    now = dt.datetime.now(dt.UTC)
    renew_before = pki.parse_duration(args.renew_before)
    out: Path = args.out_dir
    ca, serving = _read_files(out)
    verdict = pki.assess(ca, serving, dns_names=dns, ips=ips, now=now, renew_before=renew_before)
    if verdict.verdict is pki.Verdict.HEALTHY and not (args.force or args.rotate):
        print(f"{out}: healthy, kept (expires {pki.not_after(serving.cert_pem).date()})")  # type: ignore[union-attr]
        return 0
    if ca is None or verdict.verdict is pki.Verdict.NEW_CA or args.force:
        ca = pki.generate_ca("bond-injector-dev-ca", now, pki.parse_duration(args.ca_validity))
    serving = pki.generate_serving(ca, dns, ips, now, pki.parse_duration(args.validity))
    out.mkdir(parents=True, exist_ok=True)
    _write_file(out / "ca.crt", ca.cert_pem, 0o644)
    _write_file(out / "ca.key", ca.key_pem, 0o600)
    _write_file(out / "tls.key", serving.key_pem, 0o600)
    _write_file(out / "tls.crt", serving.cert_pem, 0o644)
    why = "; ".join(verdict.reasons) or ("forced" if args.force else "rotated")
    print(f"{out}: wrote ca.crt, ca.key, tls.crt, tls.key for {', '.join(dns + ips)} ({why})")
    return 0


def _in_cluster(args: argparse.Namespace, *, rotate: bool) -> int:
    from certs import kube  # noqa: PLC0415 (the API client is only needed here)
    from webhook.kubeapi import connect  # noqa: PLC0415

    namespace = args.namespace or _pod_namespace() or "default"
    dns, ips = _names(args, args.service_namespace or namespace)
    policy = kube.Policy(
        dns_names=tuple(dns),
        ips=tuple(ips),
        renew_before=pki.parse_duration(args.renew_before),
        ca_validity=pki.parse_duration(args.ca_validity),
        serving_validity=pki.parse_duration(args.validity),
    )
    target = kube.Target(namespace, args.secret, args.webhook_config, tuple(args.webhook))
    with connect(args.kubeconfig, args.context) as api:
        outcome = kube.ensure(
            api,
            target,
            policy,
            dt.datetime.now(dt.UTC),
            force_serving=rotate,
            force_ca=rotate and args.new_ca,
        )
    why = "; ".join(outcome.reasons)
    print(f"{namespace}/{args.secret}: {outcome.verdict.value}" + (f" ({why})" if why else ""))
    for action in outcome.actions or ("nothing to change",):
        print(f"  {action}")
    return 0


def _read_files(out: Path) -> tuple[pki.KeyPair | None, pki.KeyPair | None]:
    def pair(cert: str, key: str) -> pki.KeyPair | None:
        try:
            return pki.KeyPair((out / cert).read_bytes(), (out / key).read_bytes())
        except FileNotFoundError:
            return None

    return pair("ca.crt", "ca.key"), pair("tls.crt", "tls.key")


def _write_file(path: Path, data: bytes, mode: int) -> None:
    # Create with the final mode and rename, so a key is never readable by others, even briefly.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)


def _pod_namespace() -> str | None:
    try:
        return _IN_CLUSTER_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


def _describe(exc: Exception) -> str:
    status, reason, message = (getattr(exc, k, None) for k in ("status", "reason", "message"))
    if status is not None:  # webhook.kubeapi.ApiError: the API server's status and message
        return f"HTTP {status} {reason}: {message}"
    return str(exc) or type(exc).__name__


def run() -> None:
    sys.exit(main(sys.argv[1:]))


__all__: Sequence[str] = ("main",)
