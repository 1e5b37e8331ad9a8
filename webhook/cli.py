"""`bond-injector`: serve the webhook, preview a mutation offline, or manage certificates."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import jsonpatch
import yaml

from webhook.app import DEFAULT_MAX_BODY, Settings
from webhook.mutation import mutate
from webhook.nads import NadError, load_nad_file
from webhook.profiles import ProfileError, parse_profiles


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # --- hook for the certs engineer: `bond-injector certs ...` is certs.cli:main(argv) ---
    if args[:1] == ["certs"]:
        from certs.cli import main as certs_main  # noqa: PLC0415 - only this subcommand needs it

        return certs_main(args[1:])
    # --- end of hook ---
    parsed = _parser().parse_args(args)
    if parsed.command == "serve":
        return _serve(parsed)
    return _preview(parsed)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bond-injector", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the mutating admission webhook over TLS")
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 - the API server is remote
    serve.add_argument("--port", type=int, default=9443)
    serve.add_argument("--tls-cert", type=Path, help="serving certificate (reloaded on change)")
    serve.add_argument("--tls-key", type=Path, help="its private key")
    serve.add_argument("--client-ca", type=Path, help="require client certificates from this CA")
    serve.add_argument("--profiles", type=Path, required=True, help="profiles YAML (reloaded)")
    source = serve.add_mutually_exclusive_group()
    source.add_argument("--nads", type=Path, help="NADs from this YAML file, not the API server")
    source.add_argument("--kubeconfig", type=Path, help="API server access (default: in-cluster)")
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--health-port",
        type=int,
        help="also serve /healthz, /readyz, /metrics over plain HTTP here (for probes with mTLS)",
    )
    serve.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY)
    serve.add_argument(
        "--insecure-http",
        action="store_true",
        help="serve plain HTTP (local development only; the API server requires TLS)",
    )

    # Listed for --help only: main() hands `certs ...` to certs.cli before parsing.
    commands.add_parser("certs", help="CA and serving certificates (see: certs --help)")

    preview = commands.add_parser("preview", help="print the pod as the webhook would admit it")
    preview.add_argument("pod", type=Path, help="Pod manifest (YAML or JSON)")
    preview.add_argument("--profiles", type=Path, required=True)
    preview.add_argument("--nads", type=Path, required=True, help="NADs (multi-doc YAML or List)")
    preview.add_argument(
        "--namespace", help="the request's namespace (default: the pod's, or default)"
    )
    return parser


def _serve(args: argparse.Namespace) -> int:
    from webhook.server import ServeOptions, configure_logging, serve  # noqa: PLC0415
    from webhook.tls import TlsError, TlsFiles  # noqa: PLC0415

    configure_logging()
    if args.insecure_http:
        tls = None
    elif args.tls_cert is None or args.tls_key is None:
        print("bond-injector serve: --tls-cert and --tls-key are required", file=sys.stderr)
        return 2
    else:
        tls = TlsFiles(args.tls_cert, args.tls_key, args.client_ca)
    options = ServeOptions(
        settings=Settings(profiles=args.profiles, max_body_bytes=args.max_body_bytes),
        host=args.host,
        port=args.port,
        tls=tls,
        nads_file=args.nads,
        kubeconfig=args.kubeconfig,
        workers=args.workers,
        health_port=args.health_port,
    )
    try:
        return serve(options)
    except (TlsError, ProfileError, NadError, ValueError) as exc:
        print(f"bond-injector serve: {exc}", file=sys.stderr)
        return 2


def _preview(args: argparse.Namespace) -> int:
    try:
        pod = yaml.safe_load(args.pod.read_text(encoding="utf-8"))
        profiles = parse_profiles(args.profiles.read_text(encoding="utf-8"), str(args.profiles))
        nads = load_nad_file(args.nads)
    except (OSError, yaml.YAMLError, ProfileError, NadError) as exc:
        print(f"bond-injector preview: {exc}", file=sys.stderr)
        return 2
    if not isinstance(pod, dict) or pod.get("kind", "Pod") != "Pod":
        print(f"bond-injector preview: {args.pod} is not a Pod manifest", file=sys.stderr)
        return 2
    decision = mutate(pod, args.namespace, profiles, nads.cached)
    for warning in decision.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not decision.allowed:
        print(f"denied: {decision.message}", file=sys.stderr)
        return 1
    if not decision.in_scope:
        print(f"note: unchanged, {decision.message}", file=sys.stderr)
    mutated = jsonpatch.apply_patch(pod, decision.patch)
    sys.stdout.write(yaml.safe_dump(mutated, sort_keys=False))
    return 0
