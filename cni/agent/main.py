"""`bond agent`: the watcher, the sender and the metrics server, wired from the command line."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from cni.agent import metrics
from cni.agent.kube import KubeSink, LogSink
from cni.agent.report import Reporter, Sink
from cni.agent.watch import Agent

log = logging.getLogger("cni.agent")


def run(
    folder: str,
    *,
    node: str,
    kube: str,
    metrics_address: str,
    metrics_port: int,
    rescan: float,
    api_server: str | None = None,
    token_file: str | None = None,
    ca_file: str | None = None,
) -> int:
    sink: Sink
    if kube == "off":
        sink = LogSink(sys.stdout)
    elif api_server:
        sink = KubeSink(api_server, token_file or "", ca_file, node)
    else:
        sink = KubeSink.in_cluster(node)
    reporter = Reporter(folder, sink)
    agent = Agent(folder, reporter, rescan)
    stop = threading.Event()

    def on_signal(number: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", number)
        stop.set()
        agent.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if metrics_port:
        metrics.serve(reporter, metrics_address, metrics_port)
    sender = threading.Thread(target=reporter.run_sender, args=(stop,), name="sender", daemon=True)
    sender.start()
    log.info(
        "watching records in %s; metrics on %s:%d; reports to %s",
        folder,
        metrics_address,
        metrics_port,
        "stdout" if kube == "off" else "the Kubernetes API",
    )
    agent.run(stop)
    return 0
