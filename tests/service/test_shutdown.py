"""A browser tab left open on the dashboard must not block a graceful stop.

Server-sent event streams never end by themselves; the runtime closes them before
asking uvicorn to exit. Without that, SIGTERM left the service running indefinitely.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from .test_demo import free_port, start_demo, stop, wait_healthy


def test_sigterm_with_an_open_event_stream_stops_promptly(tmp_path: Path) -> None:
    port = free_port()
    proc = start_demo(tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc, limit=15)
        connected = threading.Event()

        def listen() -> None:
            try:
                with httpx.stream("GET", base + "/api/events", timeout=60) as r:
                    connected.set()
                    for _ in r.iter_lines():
                        pass
            except httpx.HTTPError:
                pass

        threading.Thread(target=listen, daemon=True).start()
        assert connected.wait(10), "event stream did not open"
        t0 = time.monotonic()
        code, out = stop(proc)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, out
    # uvicorn gives up on open connections after 5 s (timeout_graceful_shutdown); closing
    # the streams first must make the stop prompt, well under that.
    assert took < 4, f"stop took {took:.1f}s with an open event stream"


def test_one_ctrl_c_stops_cleanly_without_a_traceback(tmp_path: Path) -> None:
    import signal

    port = free_port()
    proc = start_demo(tmp_path, port)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, limit=15)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    # A single Ctrl-C is a graceful stop: no forced exit cancelling the app's lifespan.
    assert "Traceback" not in out and "CancelledError" not in out, out
    assert "tickwork: stopped" in out
