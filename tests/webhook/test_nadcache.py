"""The NAD cache when the API server is not there: unsynced, retrying, reported."""

from __future__ import annotations

import socket
import ssl

from tests.poll import poll
from webhook.kubeapi import KubeClient
from webhook.kubeconfig import ClusterAccess
from webhook.nadcache import KubeNadCache
from webhook.nads import NadFetchError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_unreachable_api_server_keeps_the_cache_unsynced_and_retrying() -> None:
    server = f"https://127.0.0.1:{_closed_port()}"
    access = ClusterAccess(server, "a closed port", ssl.create_default_context())
    with KubeClient(access) as api:
        cache = KubeNadCache(api, request_timeout=2, backoff_initial=0.05, backoff_max=0.1)
        cache.start()
        try:
            poll(lambda: cache.last_error, what="a reported failure")
            assert not cache.synced
            assert cache.relists == 0
            try:
                cache.fetch("default", "x")
            except NadFetchError as exc:
                assert "reading network-attachment-definition default/x" in str(exc)
            else:
                raise AssertionError("fetch from an unreachable API server must raise")
        finally:
            cache.stop()
