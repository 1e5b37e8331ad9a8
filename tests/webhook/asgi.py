"""A synchronous in-process client for an ASGI app (httpx's ASGITransport on a fresh loop)."""

from __future__ import annotations

import anyio
import httpx
from starlette.types import ASGIApp


class AsgiClient:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    def request(
        self,
        method: str,
        path: str,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self._app)
            async with httpx.AsyncClient(transport=transport, base_url="http://webhook") as client:
                return await client.request(method, path, content=content, headers=headers)

        return anyio.run(call)

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    def post(self, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.request("POST", path, content, headers)
