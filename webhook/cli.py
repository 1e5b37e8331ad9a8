"""`bond-injector`: serve the webhook, preview a mutation offline, check a cluster (doctor), or
manage certificates."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# Only what every command needs: `serve --workers N` runs its supervisor from here, and the app's
# modules belong to its workers (webhook/server.py). Each command imports the rest itself.
from webhook.settings import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_LIMIT_CONCURRENCY,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_INFLIGHT_BODY,
    DEFAULT_REQUEST_TIMEOUT,
    Settings,
)


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
    if parsed.command == "doctor":
        return _doctor(parsed)
    return _preview(parsed)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bond-injector", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the mutating admission webhook over TLS")
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 - the API server is remote
    serve.add_argument("--port", type=int, default=9443)
    serve.add_argument("--tls-cert", type=Path, help="serving certificate (reloaded on change)")
    serve.add_argument("--tls-key", type=Path, help="its private key")
    serve.add_argument(
        "--client-ca",
        type=Path,
        help="require a client certificate signed by this CA (mTLS: the API server's admission "
        "kubeconfig presents one); probes then need --health-port",
    )
    serve.add_argument("--profiles", type=Path, required=True, help="profiles YAML (reloaded)")
    source = serve.add_mutually_exclusive_group()
    source.add_argument("--nads", type=Path, help="NADs from this YAML file, not the API server")
    source.add_argument("--kubeconfig", type=Path, help="API server access (default: in-cluster)")
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--health-port",
        type=int,
        help="serve /healthz, /readyz and /metrics over plain HTTP on this port (probes carry no "
        "client certificate; Prometheus scrapes plain HTTP); the TLS port then serves no /metrics",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY,
        help="refuse (413) a larger request body, by its Content-Length before reading it, or as "
        f"it streams (default {DEFAULT_MAX_BODY}: the API server's 3 MiB object and the review "
        "around it)",
    )
    serve.add_argument(
        "--max-inflight-body-bytes",
        type=int,
        default=DEFAULT_MAX_INFLIGHT_BODY,
        help="request-body bytes one worker holds at once, across requests; 503 beyond "
        f"(default {DEFAULT_MAX_INFLIGHT_BODY})",
    )
    serve.add_argument(
        "--limit-concurrency",
        type=int,
        default=DEFAULT_LIMIT_CONCURRENCY,
        help="connections and requests one worker serves at once; 503 beyond "
        f"(default {DEFAULT_LIMIT_CONCURRENCY})",
    )
    serve.add_argument(
        "--header-timeout",
        type=float,
        default=DEFAULT_HEADER_TIMEOUT,
        metavar="SECONDS",
        help="close a connection whose request header is not complete after this long"
        f" (default {DEFAULT_HEADER_TIMEOUT:g})",
    )
    serve.add_argument(
        "--request-timeout",
        type=float,
        default=DEFAULT_REQUEST_TIMEOUT,
        metavar="SECONDS",
        help="close a connection whose request, header and body, is not complete after this long"
        f" (default {DEFAULT_REQUEST_TIMEOUT:g}; the API server waits at most its timeoutSeconds)",
    )
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

    doctor = commands.add_parser(
        "doctor",
        help="check the chain bonded pods need; with --pod, say why that pod has no bond",
        description="Checks the installed webhook, its profiles and NADs, the device plugin's "
        "pools, the nodes, the CNI DaemonSet and the webhook's TLS and admission, and prints "
        "pass/warn/fail rows, each with what to do. Exit status: 0 no failure, 1 a check "
        "failed, 2 the doctor could not run.",
    )
    doctor.add_argument(
        "--kubeconfig",
        type=Path,
        help="API server access (default: $KUBECONFIG, else ~/.kube/config, else in-cluster)",
    )
    doctor.add_argument(
        "-n",
        "--namespace",
        default="default",
        help="where bonded pods run: the pod's namespace for --pod, the namespace profiles' "
        "NADs without one resolve to, and of the dry-run pod (default: default)",
    )
    doctor.add_argument("--pod", help="explain this pod (or a workload whose pods are denied)")
    doctor.add_argument("-o", "--output", choices=["table", "json"], default="table")
    doctor.add_argument(
        "--webhook-config",
        help="the MutatingWebhookConfiguration (default: the one labelled "
        "app.kubernetes.io/part-of=bond-injector)",
    )
    doctor.add_argument(
        "--profiles", type=Path, help="profiles YAML (default: the release's ConfigMap)"
    )
    doctor.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
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
        settings=Settings(
            profiles=args.profiles,
            max_body_bytes=args.max_body_bytes,
            max_inflight_body_bytes=args.max_inflight_body_bytes,
        ),
        host=args.host,
        port=args.port,
        tls=tls,
        nads_file=args.nads,
        kubeconfig=args.kubeconfig,
        workers=args.workers,
        health_port=args.health_port,
        header_timeout=args.header_timeout,
        request_timeout=args.request_timeout,
        limit_concurrency=args.limit_concurrency,
    )
    try:
        return serve(options)
    except (TlsError, ValueError) as exc:  # ValueError: a ProfileError or NadError too
        print(f"bond-injector serve: {exc}", file=sys.stderr)
        return 2


def _default_kubeconfig() -> Path | None:
    """kubectl's order: $KUBECONFIG (its first file), ~/.kube/config; None means in-cluster."""
    first = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if first:
        return Path(first)
    home = Path.home() / ".kube" / "config"
    return home if home.exists() else None


def _doctor(args: argparse.Namespace) -> int:
    from webhook.doctor import report  # noqa: PLC0415
    from webhook.doctor.kube import DoctorError, Options, run  # noqa: PLC0415
    from webhook.kubeapi import ApiError  # noqa: PLC0415
    from webhook.kubeconfig import KubeConfigError  # noqa: PLC0415

    options = Options(
        kubeconfig=args.kubeconfig or _default_kubeconfig(),
        namespace=args.namespace,
        pod=args.pod,
        webhook_config=args.webhook_config,
        profiles_file=args.profiles,
        timeout=args.timeout,
    )
    try:
        rows = run(options)
    except ApiError as exc:
        print(
            f"bond-injector doctor: the API server said {exc.status} {exc.reason}: {exc.message}",
            file=sys.stderr,
        )
        return 2
    except (DoctorError, KubeConfigError, OSError) as exc:  # OSError: ApiUnreachable too
        print(f"bond-injector doctor: {exc}", file=sys.stderr)
        return 2
    render = report.render_json if args.output == "json" else report.render_table
    sys.stdout.write(render(rows))
    return report.exit_code(rows)


def _preview(args: argparse.Namespace) -> int:
    import jsonpatch  # noqa: PLC0415
    import yaml  # noqa: PLC0415

    from webhook.mutation import mutate  # noqa: PLC0415
    from webhook.nads import NadError, load_nad_file  # noqa: PLC0415
    from webhook.profiles import ProfileError, parse_profiles  # noqa: PLC0415

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
