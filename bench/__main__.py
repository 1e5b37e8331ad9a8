"""`python -m bench [webhook|cni|all]`: run the benchmarks, print ratios against the real peers."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from bench.report import Comparison, load_line, table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("which", nargs="?", choices=("all", "webhook", "cni"), default="all")
    parser.add_argument("--seconds", type=float, default=10.0, help="load per server and level")
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 16, 64],
        help="concurrent TLS connections, comma separated (default 1,16,64)",
    )
    parser.add_argument("--pods", type=int, default=500, help="pod creates per webhook (0: none)")
    parser.add_argument("--iterations", type=int, default=50, help="CNI rounds per plugin")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])
    print(f"command: {command}\n{load_line()}")
    rows: list[Comparison] = []
    if args.which in ("all", "webhook"):
        from bench import webhook  # noqa: PLC0415 - only what was asked for

        print(f"\n== webhook: {args.seconds:g} s of load per server at each of {args.concurrency}")
        rows += webhook.run(args.seconds, args.concurrency, args.pods)
        print(load_line())
    if args.which in ("all", "cni"):
        from bench import cni  # noqa: PLC0415

        print(f"\n== CNI: {args.iterations} ADD+DEL rounds per plugin, in one VM")
        rows += cni.run(args.iterations)
        print(load_line())
    print(f"\n== summary (ours / peer)\n{load_line()}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
