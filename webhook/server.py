"""Serving: uvicorn over TLS with certificate reload, the NAD source, graceful SIGTERM.

With `--workers N` this process only supervises: it binds the socket and starts, watches and
restarts N spawned workers, each of which loads the app in `WebhookConfig.load()`. So the app's
modules (starlette, prometheus_client, cryptography, PyYAML, the NAD cache) are imported there
and not here: the supervisor stays at the interpreter plus uvicorn (~26 MiB, not ~44 MiB).
tests/webhook/test_cli.py checks which modules the supervisor holds.
"""

from __future__ import annotations

import logging
import signal
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn
from uvicorn.supervisors import Multiprocess

from webhook.settings import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_LIMIT_CONCURRENCY,
    DEFAULT_REQUEST_TIMEOUT,
    Settings,
)
from webhook.tls import CertificateReloader, TlsFiles, check_pair

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from webhook.nads import NadSource

# By name, so that the supervisor need not import it (uvicorn imports it in each worker).
HEADER_TIMEOUT_PROTOCOL = "webhook.headertimeout:HeaderTimeoutProtocol"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    settings: Settings
    host: str = "0.0.0.0"  # noqa: S104 - a webhook serves the API server from another host
    port: int = 9443
    tls: TlsFiles | None = None
    nads_file: Path | None = None  # else the API server (kubeconfig, or in-cluster when None)
    kubeconfig: Path | None = None
    workers: int = 1
    graceful_timeout: float = 20.0  # under the pod's 30 s terminationGracePeriod
    sync_timeout: float = 30.0  # how long startup waits for the NAD cache before serving unready
    cert_check_interval: float = 1.0
    # Plain-HTTP port for /healthz, /readyz, /metrics: kubelet probes carry no client
    # certificate, so with a client CA they cannot use the TLS port; Prometheus scrapes plain
    # HTTP. With it set, the TLS port no longer serves /metrics (a NetworkPolicy can then admit
    # only the API server to the one and only the monitoring namespace to the other).
    health_port: int | None = None
    # A connection with no complete request header after this many seconds is closed
    # (slowloris); a kept-alive connection between requests keeps uvicorn's keep-alive timeout.
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    # ... and one whose request (header and body) is not complete after this many.
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    # Connections and requests at once per worker; a request beyond is answered 503.
    limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY


class WebhookConfig(uvicorn.Config):
    """A uvicorn Config that builds the app, the NAD source and the TLS context in `load()`.

    `load()` runs in each worker process, so each has its own cache and reloader; the object is
    plain data until then, so uvicorn can hand it to spawned workers.
    """

    header_timeout: float  # read by HeaderTimeoutProtocol for each connection
    request_timeout: float

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.reloader: CertificateReloader | None = None
        self.nad_source: NadSource | None = None
        self._stop_source: Callable[[], None] | None = None
        self._health: _HealthServer | None = None
        super().__init__(
            app="webhook.app:create_app",  # replaced in load(); uvicorn wants a name for workers
            host=options.host,
            port=options.port,
            workers=options.workers,
            http=HEADER_TIMEOUT_PROTOCOL,
            # asyncio's loop with a 32 KiB TLS buffer, not uvloop: uvloop accepts one connection
            # per loop iteration, so new handshakes wait seconds behind a saturated worker
            # (webhook/eventloop.py has the measurements).
            loop="webhook.eventloop:ServingLoop",
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=int(options.graceful_timeout),
            limit_concurrency=_positive("limit_concurrency", options.limit_concurrency),
            ssl_context_factory=self._ssl_context if options.tls is not None else None,
        )
        set_deadlines(self, options.header_timeout, options.request_timeout)

    def load(self) -> None:
        from webhook.app import create_app  # noqa: PLC0415 - in the worker only

        options = self.options
        if options.tls is not None:
            self.reloader = CertificateReloader(options.tls, options.cert_check_interval)
        self.nad_source = self._nad_source()
        app = create_app(options.settings, self.nad_source, certificate=self.reloader)
        self.app = app
        if options.health_port is not None:
            self.app = _Paths(app, lambda path: path != "/metrics")
            self._health = _HealthServer(app, options, options.health_port)
        super().load()

    def configure_logging(self) -> None:
        super().configure_logging()
        configure_logging()  # spawned workers start with no logging set up

    def stop_sources(self) -> None:
        if self._health is not None:
            self._health.stop()
        if self._stop_source is not None:
            self._stop_source()

    def _ssl_context(
        self, config: uvicorn.Config, default: Callable[[], ssl.SSLContext]
    ) -> ssl.SSLContext:
        assert self.reloader is not None
        return self.reloader.context

    def _nad_source(self) -> NadSource:
        options = self.options
        if options.nads_file is not None:
            from webhook.nads import load_nad_file  # noqa: PLC0415 - in the worker only

            return load_nad_file(options.nads_file)
        # Only serving from the API server needs its client.
        from webhook.kubeapi import connect  # noqa: PLC0415
        from webhook.nadcache import KubeNadCache  # noqa: PLC0415

        api = connect(options.kubeconfig)
        cache = KubeNadCache(api)
        cache.start()

        def stop() -> None:
            cache.stop()
            api.close()

        self._stop_source = stop
        if not cache.wait_synced(options.sync_timeout):
            log.warning("NAD cache not synced after %.0fs; /readyz says so", options.sync_timeout)
        return cache


HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class _Paths:
    """The app's routes whose path `serves` says yes to; 404 for the others."""

    def __init__(self, app: ASGIApp, serves: Callable[[str], bool]) -> None:
        self._app = app
        self._serves = serves

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._serves(scope["path"]):
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self._app(scope, receive, send)


class _HealthServer:
    """The plain-HTTP port: /healthz, /readyz, /metrics only (it has no TLS)."""

    def __init__(self, app: ASGIApp, options: ServeOptions, port: int) -> None:
        config = uvicorn.Config(
            _Paths(app, HEALTH_PATHS.__contains__), host=options.host, port=port,
            lifespan="off", log_config=None, access_log=False, server_header=False,
            http=HEADER_TIMEOUT_PROTOCOL, ws="none",
            loop="asyncio",  # plain HTTP, a few probes and scrapes a minute
            limit_concurrency=_HEALTH_CONCURRENCY,
        )  # fmt: skip
        set_deadlines(config, options.header_timeout, options.request_timeout)
        self.server = uvicorn.Server(config)
        # Not the main thread: uvicorn installs no signal handlers here; stop() ends it.
        self._thread = threading.Thread(target=self.server.run, name="health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(5)


# Probes and scrapes come a few a minute; more at once on the plain port is someone else.
_HEALTH_CONCURRENCY = 16


def set_deadlines(config: uvicorn.Config, header: float, request: float) -> None:
    """Give uvicorn's config the deadlines webhook.headertimeout reads (plain attributes: the
    config is pickled to spawned workers, so no class is made per value)."""
    if header <= 0:
        raise ValueError(f"the request-header timeout must be positive, got {header:g} s")
    if request < header:
        raise ValueError(
            f"the request timeout ({request:g} s) covers the header too, so it must be at least "
            f"the header timeout ({header:g} s); raise --request-timeout"
        )
    config.header_timeout = header  # type: ignore[attr-defined]
    config.request_timeout = request  # type: ignore[attr-defined]


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def configure_logging(level: int = logging.INFO) -> None:
    """Plain messages on stderr: admission lines are JSON already."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(message)s")


def serve(options: ServeOptions) -> int:
    """Run until SIGTERM/SIGINT; in-flight requests finish before exit."""
    if options.health_port is not None and options.workers > 1:
        raise ValueError("--health-port needs --workers 1 (each worker would bind it)")
    if options.tls is not None:  # fail fast, before any worker starts
        if options.workers > 1:
            check_pair(options.tls)  # the same checks, without the certificate's notAfter
        else:
            CertificateReloader(options.tls)
    config = WebhookConfig(options)
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal after draining; exit 0 then, not "killed by SIGTERM" (143).
    signal.signal(signal.SIGTERM, _drained)
    try:
        if options.workers > 1:
            Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            server.run()
    finally:
        config.stop_sources()
    return 0 if server.started or options.workers > 1 else 1


def _drained(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
