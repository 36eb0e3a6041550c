"""`tickwork demo` as a user starts it: a real subprocess serving the UI within 5 seconds."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tickwork.service.cli import load_demo_config
from tickwork.service.runtime import build_scheduler, load_app_factory

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_demo(tmp: Path, port: int) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("TICKWORK_TOKEN", None)
    return subprocess.Popen(
        [sys.executable, "-m", "tickwork", "demo", "--port", str(port), "--dir", str(tmp)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=2) as r:
        return json.loads(r.read())


def wait_healthy(base: str, proc: subprocess.Popen[str], limit: float) -> float:
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"demo exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        try:
            get_json(base + "/healthz")
            return time.monotonic() - t0
        except OSError:
            if time.monotonic() - t0 > limit:
                raise AssertionError(f"/healthz not up within {limit}s") from None
            time.sleep(0.05)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    return proc.returncode, out


def test_bundled_demo_config_is_valid_and_has_every_kind(tmp_path: Path) -> None:
    cfg = load_demo_config(tmp_path)
    kinds = {tc.task.schedule.type for tc in cfg.tasks}
    assert kinds == {"interval", "cron", "once"}
    assert any(tc.command is not None for tc in cfg.tasks)
    assert any(tc.command is not None and tc.command.shell for tc in cfg.tasks)
    assert any(tc.task.retry is not None and tc.task.retry.max_retries > 0 for tc in cfg.tasks)
    assert any(tc.task.timeout is not None for tc in cfg.tasks)
    deps = {tc.id: tc.task.dependencies for tc in cfg.tasks}
    assert deps["process"] == ["prepare"] and deps["report"] == ["process"]
    assert cfg.scheduler.store == f"sqlite:///{tmp_path / 'tickwork-demo.db'}"
    sched, rep = build_scheduler(cfg)
    assert sorted(rep.added) == sorted(deps)
    sched.stop()


@pytest.mark.realtime
def test_demo_subprocess_serves_healthz_within_5s_and_stops_on_sigterm(tmp_path: Path) -> None:
    if load_app_factory()[0] is None:
        pytest.skip(f"web API not available: {load_app_factory()[1]}")
    port = free_port()
    proc = start_demo(tmp_path, port)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, limit=5.0)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            assert r.status == 200 and "html" in r.headers.get("content-type", "")
    finally:
        code, out = stop(proc)
    assert code == 0, out
    assert f"http://127.0.0.1:{port}/" in out
    assert "tickwork: stopped" in out
    assert (tmp_path / "tickwork-demo.db").exists()


@pytest.mark.realtime
def test_demo_without_web_api_still_runs_the_scheduler(tmp_path: Path) -> None:
    # Simulate an install without the web extra: fastapi cannot be imported.
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "fastapi.py").write_text("raise ModuleNotFoundError(name='fastapi')\n")
    env = dict(os.environ, PYTHONPATH=str(blocker), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickwork", "demo", "--port", str(free_port()),
         "--dir", str(tmp_path / "state")],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 10
    while not (tmp_path / "state" / "tickwork-demo.db").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    code, out = stop(proc)
    assert code == 0, out
    assert "web UI and API are unavailable" in out and "fastapi" in out
