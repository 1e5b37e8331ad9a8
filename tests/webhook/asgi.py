"""A synchronous in-process client for an ASGI app (httpx's ASGITransport on a fresh loop)."""

from __future__ import annotations

from typing import Any

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


def response_of(sent: list[Any]) -> tuple[int, bytes]:
    """The status and whole body of the ASGI messages an app sent: the spec lets the body come in
    any number of messages, and how many is the framework's business, not ours."""
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body
