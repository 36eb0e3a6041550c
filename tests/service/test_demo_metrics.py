"""The demo as a user sees it: UI within 5 s, and /metrics that Prometheus can parse."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tickwork.service.runtime import load_app_factory

from .test_demo import free_port, start_demo, stop, wait_healthy


@pytest.mark.realtime
def test_demo_metrics_parse_with_prometheus_parser(tmp_path: Path) -> None:
    if load_app_factory()[0] is None:
        pytest.fail(f"web API not available: {load_app_factory()[1]}")
    port = free_port()
    proc = start_demo(tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_healthy(base, proc, limit=5.0) < 5.0
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            assert r.status == 200
            text = r.read().decode()
    finally:
        code, out = stop(proc)
    assert code == 0, out
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # the scheduler's own families and the standard process metrics are both there
    assert "tickwork_running" in families
    assert "tickwork_tasks" in families
    assert any(name.startswith("process_") for name in families)
    states = {s.labels.get("state") for s in families["tickwork_tasks"].samples}
    assert "scheduled" in states or "running" in states
