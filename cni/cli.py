"""The `bond` executable (bond-plugin in the bundle, `bond-cni` as a console script).

Without arguments it is the CNI plugin, as runtimes call it; `bond serve` runs the warm per-node
helper, `bond probe` asks one whether it answers, and `bond agent` runs the bond health agent.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        from cni.plugin.dispatch import main as plugin  # noqa: PLC0415

        return plugin()
    if args[0] == "agent":
        return _agent_cli(args[1:])
    return _helper_cli(args)


def _agent_cli(argv: list[str]) -> int:
    from cni.core.records import DEFAULT_DIR  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="bond agent",
        description="watch the bonds the plugin recorded on this node; report their health as "
        "Prometheus metrics, Pod Events and the bond-injector.io/BondHealthy condition",
    )
    parser.add_argument("--records", default=DEFAULT_DIR, help=f"(default {DEFAULT_DIR})")
    parser.add_argument("--node", default=os.environ.get("NODE_NAME", ""), help="(env NODE_NAME)")
    parser.add_argument(
        "--kube",
        choices=("in-cluster", "off"),
        default="in-cluster",
        help="off: report as JSON lines on stdout instead of to the API server",
    )
    parser.add_argument("--api-server", help="https URL; default: the pod's in-cluster API")
    parser.add_argument("--token-file", help="bearer token file, with --api-server")
    parser.add_argument("--ca-file", help="CA bundle of the API server, with --api-server")
    parser.add_argument("--metrics-address", default="0.0.0.0", help="(default 0.0.0.0)")  # noqa: S104
    parser.add_argument("--metrics-port", type=int, default=9153, help="0: none (default 9153)")
    parser.add_argument(
        "--rescan", type=float, default=30.0, help="seconds between safety rescans (default 30)"
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.rescan <= 0 or not 0 <= args.metrics_port <= 65535:
        parser.error("--rescan must be > 0 and --metrics-port 0-65535")
    if args.api_server and not args.token_file:
        parser.error("--api-server needs --token-file")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("bond-agent %(levelname)s %(message)s"))
    log = logging.getLogger("cni")
    log.addHandler(handler)
    log.setLevel(args.log_level.upper())
    from cni.agent.main import run  # noqa: PLC0415

    try:
        return run(
            args.records,
            node=args.node,
            kube=args.kube,
            metrics_address=args.metrics_address,
            metrics_port=args.metrics_port,
            rescan=args.rescan,
            api_server=args.api_server,
            token_file=args.token_file,
            ca_file=args.ca_file,
        )
    except ValueError as exc:
        log.error("%s", exc)
        return 2


def _helper_cli(argv: list[str]) -> int:
    from cni.core.policy import DEFAULT_IPAM_PLUGINS, NodePolicy  # noqa: PLC0415
    from cni.helper.server import DEFAULT_SOCKET  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="bond", description="the bond CNI plugin's warm per-node helper"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    default = os.environ.get("BOND_CNI_HELPER_SOCKET") or DEFAULT_SOCKET
    serve_cmd = commands.add_parser("serve", help="run the per-node helper")
    serve_cmd.add_argument("--socket", default=default, help=f"(default {default})")
    serve_cmd.add_argument("--max-children", type=int, default=64, help="requests in flight")
    serve_cmd.add_argument("--request-timeout", type=float, default=300.0, help="seconds")
    serve_cmd.add_argument("--spares", type=int, default=2, help="children forked ahead")
    serve_cmd.add_argument(
        "--cni-path",
        default="/opt/cni/bin",
        help="where requests' IPAM plugins are found, ':'-separated; replaces each request's "
        "CNI_PATH (default /opt/cni/bin)",
    )
    serve_cmd.add_argument(
        "--ipam-plugins",
        default=",".join(DEFAULT_IPAM_PLUGINS),
        help="the IPAM plugins (ipam.type) requests may name, ','-separated "
        f"(default {','.join(DEFAULT_IPAM_PLUGINS)})",
    )
    serve_cmd.add_argument(
        "--allow-host-links",
        action="store_true",
        help="let linksInContainer: false move node links into pods (never one a default route "
        "goes out of); off, such requests are refused whatever their allowHostLinks says",
    )
    serve_cmd.add_argument(
        "--proc-netns",
        action="store_true",
        help="also serve CNI_NETNS paths /proc/<pid>/ns/net (cri-dockerd), besides files "
        "directly in /run/netns and /var/run/netns",
    )
    serve_cmd.add_argument("--log-level", default="INFO", help="DEBUG lists lazy imports")
    probe_cmd = commands.add_parser("probe", help="exit 0 when a helper answers")
    probe_cmd.add_argument("--socket", default=default, help=f"(default {default})")
    probe_cmd.add_argument("--timeout", type=float, default=5.0, help="seconds")
    args = parser.parse_args(argv)
    if args.command == "probe":
        from cni.helper.probe import probe  # noqa: PLC0415

        return probe(args.socket, args.timeout)
    if args.max_children < 0 or args.spares < 0:
        parser.error("--max-children and --spares must be 0 or more")
    ipam_plugins = tuple(name for name in args.ipam_plugins.split(",") if name)
    if any("/" in name for name in ipam_plugins):
        parser.error("--ipam-plugins takes plugin names, not paths")
    policy = NodePolicy.helper(
        host_links=args.allow_host_links, ipam_plugins=ipam_plugins, proc_netns=args.proc_netns
    )
    from cni.helper.server import HelperError, log, serve  # noqa: PLC0415

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("bond-cni helper %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(args.log_level.upper())
    log.propagate = False
    try:
        return serve(
            args.socket,
            args.max_children,
            args.request_timeout,
            args.spares,
            cni_path=args.cni_path,
            policy=policy,
        )
    except HelperError as exc:
        log.error("%s", exc)
        return 2
