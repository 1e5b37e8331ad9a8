"""`python -m bench [webhook|cni|all]`: run the benchmarks, print ratios against the peers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bench.report import Comparison, load_line, table

UNAVAILABLE = (
    "The real peers are not available here: the Go module proxy answers 403 for "
    "github.com/k8snetworkplumbingwg/network-resources-injector, "
    "github.com/k8snetworkplumbingwg/bond-cni and github.com/intel/bond-cni. "
    "The peers below are stand-ins (see bench/README.md)."
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("which", nargs="?", choices=("all", "webhook", "cni"), default="all")
    parser.add_argument("--seconds", type=float, default=10.0, help="load per webhook server")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=10, help="CNI ADD+DEL rounds per plugin")
    args = parser.parse_args(argv)
    print(UNAVAILABLE)
    print(load_line())
    rows: list[Comparison] = []
    if args.which in ("all", "webhook"):
        from bench import webhook  # noqa: PLC0415 - only what was asked for

        print(f"\n== webhook: {args.seconds:g} s of load, {args.connections} connections each")
        rows += webhook.run(args.seconds, args.connections)
    if args.which in ("all", "cni"):
        from bench import cni  # noqa: PLC0415

        print(f"\n== CNI: {args.iterations} ADD+DEL rounds per plugin, in one VM")
        rows += cni.run(args.iterations)
    print(f"\n== summary (ours / peer; every peer is a stand-in)\n{load_line()}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
