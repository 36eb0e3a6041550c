"""Fixtures for the service tests: a real Scheduler, the app, and a real uvicorn server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tickwork import Scheduler, Task, TaskContext, every
from tickwork.service.api import create_app
from tickwork.testing import FakeClock

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TOKEN = "s3cret-token"
# Import strings the API accepts (stdlib, always importable): one succeeds, one fails.
OK_HANDLER = "time:time"
FAILING_HANDLER = "json:dumps"  # called with ctx -> TypeError: not JSON serializable


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``cond`` in real time with a deadline (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(0.005)


def boom(ctx: TaskContext) -> None:
    raise ValueError("boom")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def sched(clock: FakeClock) -> Iterator[Scheduler]:
    s = Scheduler(clock=clock, timezone="UTC", max_workers=4, max_retries=0)
    s.add_task(Task(id="alpha", name="Alpha job", handler=OK_HANDLER, schedule=every(minutes=5)))
    s.add_task(Task(id="beta", name="Beta job", handler=boom, schedule=every(hours=1),
                    dependencies=[]))
    yield s
    s.stop(timeout=5)


@pytest.fixture
def app(sched: Scheduler) -> FastAPI:
    return create_app(sched)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@dataclass
class LiveServer:
    url: str
    sched: Scheduler
    app: FastAPI
    server: uvicorn.Server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="uvicorn start")
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture
def live_server(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A real-clock scheduler with a few tasks, served by uvicorn on a free port."""
    token: str | None = getattr(request, "param", None)
    s = Scheduler(timezone="UTC", max_workers=4, max_retries=0)

    def slow(ctx: TaskContext) -> dict[str, Any]:
        ctx.wait(0.3)
        return {"output": f"done {ctx.run_id[-8:]} attempt {ctx.attempt}"}

    s.add_task(Task(id="report", name="Nightly <b>report</b>", handler=slow,
                    schedule=every(hours=6)))
    s.add_task(Task(id="cleanup", name="Cleanup", handler=slow, schedule=every(hours=12),
                    enabled=True))
    s.add_task(Task(id="broken", name="Always fails", handler=boom, schedule=every(hours=3)))
    s.start()
    app = create_app(s, token=token)
    app.state.keepalive = 0.5
    server, thread, url = serve(app)
    try:
        yield LiveServer(url=url, sched=s, app=app, server=server)
    finally:
        app.state.close_streams()  # as the runtime does: open SSE would delay shutdown
        server.should_exit = True
        thread.join(timeout=10)
        s.stop(timeout=5)
