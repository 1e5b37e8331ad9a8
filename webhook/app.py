"""The ASGI application: /mutate (lean ASGI), /healthz, /readyz, /metrics.

Starlette routing alone: FastAPI (and the pydantic it brings) cost ~18 MiB per worker for three
small GET routes (bench/RESULTS.md, memory).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from webhook.endpoint import BodyBudget, MutateEndpoint
from webhook.metrics import Metrics
from webhook.nads import NadSource
from webhook.profiles import ProfileStore
from webhook.settings import DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_BODY, Settings  # re-exported

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_MAX_BODY",
    "CertificateState",
    "Settings",
    "WebhookApp",
    "create_app",
]


class WebhookApp(Starlette):
    """Starlette for the small routes; POST /mutate skips its middleware stack (the hot path)."""

    mutate_endpoint: MutateEndpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/mutate" and scope["method"] == "POST":
            await self.mutate_endpoint(scope, receive, send)  # never raises for bad input
            return
        await super().__call__(scope, receive, send)


class CertificateState(Protocol):
    """What the TLS layer tells the app: until when the serving certificate is valid.

    Serving starts only once a pair loads (webhook.tls), and a reload keeps the last good pair, so
    there is always one; what can go wrong later is that it expires.
    """

    @property
    def not_after(self) -> float: ...


def create_app(
    settings: Settings,
    nad_source: NadSource,
    clock: Callable[[], float] = time.perf_counter,
    *,
    certificate: CertificateState | None = None,
    now: Callable[[], float] = time.time,
) -> WebhookApp:
    profiles = ProfileStore(settings.profiles)

    def state() -> dict[str, tuple[str, float | None]]:
        not_after = certificate.not_after if certificate is not None else None
        return {
            "bond_injector_nad_cache_synced": (
                "1 when the NAD source has its initial state",
                float(nad_source.synced),
            ),
            "bond_injector_nad_cache_objects": ("NADs in the cache", float(len(nad_source))),
            "bond_injector_certificate_expiry_timestamp_seconds": (
                "notAfter of the serving certificate, Unix time",
                not_after,
            ),
            "bond_injector_profiles_reload_failing": (
                "1 when the profiles file changed to something invalid (the last good is in use)",
                float(profiles.last_error is not None),
            ),
        }

    metrics = Metrics(state)
    if settings.max_inflight_body_bytes < settings.max_body_bytes:
        raise ValueError(
            f"--max-inflight-body-bytes ({settings.max_inflight_body_bytes}) is less than "
            f"--max-body-bytes ({settings.max_body_bytes}), so the largest body would never be "
            "served; raise it"
        )
    endpoint = MutateEndpoint(
        profiles,
        nad_source,
        metrics,
        clock,
        max_body_bytes=settings.max_body_bytes,
        budget=BodyBudget(settings.max_inflight_body_bytes),
    )

    def healthz(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    def readyz(_: Request) -> Response:
        problems = []
        if certificate is not None and certificate.not_after <= now():
            problems.append("the serving certificate has expired")
        if not nad_source.synced:
            problems.append("NAD cache not synced with the API server yet")
        profiles.current()  # picks up a changed file; a bad one keeps the last good
        if problems:
            return JSONResponse({"ready": False, "problems": problems}, status_code=503)
        return JSONResponse({"ready": True})

    def metrics_endpoint(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app = WebhookApp(
        routes=[
            Route("/mutate", endpoint, methods=["POST"]),  # 405 for the rest
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ]
    )
    app.mutate_endpoint = endpoint
    return app
