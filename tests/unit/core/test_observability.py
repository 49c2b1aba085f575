from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from soundscape.observability import ObservabilityServer


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("healthy", [True, False])
def test_health_and_metrics_over_http(healthy: bool) -> None:
    registry = CollectorRegistry()
    Counter("chunks_total", "chunks seen", registry=registry).inc(3)
    server = ObservabilityServer(lambda: {"healthy": healthy, "lag": 4}, registry=registry).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        code, body = _get(base + "/healthz")
        assert code == (200 if healthy else 503)
        assert json.loads(body) == {"healthy": healthy, "lag": 4}
        code, body = _get(base + "/metrics")
        assert code == 200 and b"chunks_total 3.0" in body
        assert _get(base + "/nope")[0] == 404
    finally:
        server.stop()


def test_failing_health_check_is_reported_not_raised() -> None:
    def broken() -> dict:
        raise RuntimeError("db unreachable")

    server = ObservabilityServer(broken).start()
    try:
        code, body = _get(f"http://127.0.0.1:{server.port}/healthz")
        assert code == 503 and b"db unreachable" in body
    finally:
        server.stop()
