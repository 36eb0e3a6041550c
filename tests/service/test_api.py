"""Every API endpoint and every error path, against a real Scheduler (FakeClock)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tickwork import Event, Scheduler, Task, TaskState, every
from tickwork.service.api import create_app
from tickwork.testing import FakeClock, settle

from .conftest import FAILING_HANDLER, OK_HANDLER, LiveServer, serve, wait_for


def err(resp: httpx.Response, status: int, code: str | None = None) -> str:
    """Assert the uniform error shape; return the message."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return str(body["error"]["message"])


def new_task(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": "gamma", "name": "Gamma", "handler": OK_HANDLER,
                            "schedule": {"interval": "10m"}}
    body.update(over)
    return body


# ----- tasks: list / create ------------------------------------------------------------
def test_list_tasks_ordered_with_runtime_fields(client: TestClient) -> None:
    r = client.get("/api/tasks")
    assert r.status_code == 200
    tasks = r.json()
    assert [t["id"] for t in tasks] == ["alpha", "beta"]
    alpha = tasks[0]
    assert alpha["name"] == "Alpha job"
    assert alpha["state"] == "scheduled"
    assert alpha["schedule"]["type"] == "interval"
    assert alpha["schedule"]["interval"] == 300.0
    assert alpha["schedule"]["description"] == "every 5 minutes"
    assert alpha["next_run"] == "2026-01-01T00:00:00Z"
    assert alpha["handler"] == OK_HANDLER
    assert tasks[1]["handler"].endswith(":boom")


def test_create_interval_task(client: TestClient, sched: Scheduler) -> None:
    r = client.post("/api/tasks", json=new_task(priority=100, dependencies=["alpha"],
                                                 retries=2, retry_delay="3s", timeout=30,
                                                 metadata={"team": "ops"}))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"] == "gamma" and body["priority"] == 100
    assert body["retry"]["max_retries"] == 2 and body["retry"]["delay"] == 3.0
    assert body["timeout"] == 30.0 and body["metadata"] == {"team": "ops"}
    t = sched.get_task("gamma")
    assert t.dependencies == ["alpha"] and t.schedule.interval is not None
    assert t.schedule.interval.total_seconds() == 600


def test_create_cron_task_with_timezone(client: TestClient) -> None:
    r = client.post("/api/tasks", json=new_task(
        schedule={"cron": "0 9 * * MON-FRI", "timezone": "Europe/Berlin"}))
    assert r.status_code == 201, r.text
    s = r.json()["schedule"]
    assert s["type"] == "cron" and s["timezone"] == "Europe/Berlin"
    assert "Monday through Friday" in s["description"]
    # 2026-01-01 is a Thursday; 09:00 Berlin is 08:00 UTC.
    assert r.json()["next_run"] == "2026-01-01T08:00:00Z"


def test_create_once_task(client: TestClient) -> None:
    r = client.post("/api/tasks", json=new_task(
        schedule={"at": ["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]}))
    assert r.status_code == 201, r.text
    assert r.json()["schedule"]["type"] == "once"
    assert r.json()["next_run"] == "2026-01-02T00:00:00Z"


def test_create_disabled_task(client: TestClient) -> None:
    r = client.post("/api/tasks", json=new_task(enabled=False))
    assert r.status_code == 201
    assert r.json()["state"] == "disabled" and r.json()["next_run"] is None


def test_create_duplicate_is_409(client: TestClient) -> None:
    err(client.post("/api/tasks", json=new_task(id="alpha")), 409, "duplicate")


def test_create_unknown_dependency_is_409(client: TestClient) -> None:
    msg = err(client.post("/api/tasks", json=new_task(dependencies=["nope"])), 409,
              "dependency_conflict")
    assert "nope" in msg


def test_create_self_dependency_is_409(client: TestClient) -> None:
    err(client.post("/api/tasks", json=new_task(dependencies=["gamma"])), 409,
        "dependency_conflict")


@pytest.mark.parametrize(("body", "needle"), [
    ({"id": "x", "handler": OK_HANDLER}, "schedule"),
    (new_task(id="bad id!"), "id"),
    (new_task(id=""), "id"),
    (new_task(schedule={}), "exactly one"),
    (new_task(schedule={"interval": "5m", "cron": "* * * * *"}), "exactly one"),
    (new_task(schedule={"interval": -5}), "interval"),
    (new_task(schedule={"interval": 0}), "interval"),
    (new_task(schedule={"interval": "5 parsecs"}), "5 parsecs"),
    (new_task(schedule={"interval": "5m", "timezone": "UTC"}), "timezone"),
    (new_task(schedule={"cron": "61 * * * *"}), "61"),
    (new_task(schedule={"cron": "* * *"}), "fields"),
    (new_task(schedule={"cron": "* * * * *", "timezone": "Mars/Olympus"}), "Mars/Olympus"),
    (new_task(schedule={"at": []}), "at least one"),
    (new_task(schedule={"at": ["yesterday"]}), "schedule.at"),
    (new_task(handler="no_such_module_xyz:fn"), "no_such_module_xyz"),
    (new_task(handler="not an import string"), "handler"),
    (new_task(handler="os:sep"), "not callable"),
    (new_task(handler=None), "exactly one of 'handler' or 'command'"),
    (new_task(command=["true"]), "exactly one of 'handler' or 'command'"),
    (new_task(priority="high"), "priority"),
    (new_task(max_instances=0), "max_instances"),
    (new_task(retries=-1), "retries"),
    (new_task(timeout="soon"), "soon"),
    (new_task(metadata={"a": 1}), "metadata"),
    (new_task(surprise=True), "surprise"),
    ([1, 2, 3], "body"),
])
def test_create_invalid_is_422_naming_the_field(client: TestClient, body: Any,
                                                needle: str) -> None:
    msg = err(client.post("/api/tasks", json=body), 422)
    assert needle in msg, msg


def test_create_bad_json_is_400(client: TestClient) -> None:
    r = client.post("/api/tasks", content=b'{"id": ', headers={"content-type": "application/json"})
    err(r, 400, "bad_json")


@pytest.mark.parametrize("command", [[], "echo hi"])
def test_create_command_shape_errors(client: TestClient, command: Any) -> None:
    err(client.post("/api/tasks", json=new_task(handler=None, command=command)), 422)


def test_create_command_task_runs_the_program(tmp_path: Any) -> None:
    s = Scheduler(timezone="UTC", max_retries=0)
    try:
        s.start()
        with TestClient(create_app(s)) as c:
            r = c.post("/api/tasks", json={
                "id": "cmd", "command": ["sh", "-c", "echo hello-$GREETING"],
                "env": {"GREETING": "api"}, "cwd": str(tmp_path),
                "schedule": {"interval": "1h"}})
            assert r.status_code == 201, r.text
            assert r.json()["handler"] == "command:cmd"
            wait_for(lambda: bool(s.get_history("cmd")), what="command run")
            runs = c.get("/api/tasks/cmd/history").json()
            assert runs[0]["status"] == "succeeded", runs
            assert "hello-api" in runs[0]["result"]["output"]
            err(c.post("/api/tasks", json={"id": "cmd", "command": ["true"],
                                           "schedule": {"interval": "1h"}}), 409, "duplicate")
    finally:
        s.stop(timeout=5)


# ----- one task --------------------------------------------------------------------------
def test_get_task_and_404(client: TestClient) -> None:
    assert client.get("/api/tasks/alpha").json()["id"] == "alpha"
    msg = err(client.get("/api/tasks/nope"), 404, "not_found")
    assert "nope" in msg


def test_patch_task_fields(client: TestClient, sched: Scheduler) -> None:
    r = client.patch("/api/tasks/alpha", json={
        "name": "Renamed", "priority": 7, "schedule": {"cron": "*/10 * * * *"},
        "timeout": "1m", "retries": 5, "metadata": {"k": "v"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "Renamed" and body["priority"] == 7
    assert body["schedule"]["cron"] == "*/10 * * * *"
    assert body["next_run"] == "2026-01-01T00:10:00Z"
    assert body["timeout"] == 60.0 and body["retry"]["max_retries"] == 5
    assert sched.get_task("alpha").name == "Renamed"
    # null clears an optional field; absent fields stay.
    r = client.patch("/api/tasks/alpha", json={"timeout": None})
    assert r.json()["timeout"] is None and r.json()["name"] == "Renamed"


def test_patch_enabled_and_empty_body(client: TestClient) -> None:
    r = client.patch("/api/tasks/alpha", json={"enabled": False})
    assert r.json()["state"] == "disabled"
    r = client.patch("/api/tasks/alpha", json={})
    assert r.status_code == 200 and r.json()["enabled"] is False


def test_patch_errors(client: TestClient) -> None:
    err(client.patch("/api/tasks/nope", json={"name": "x"}), 404, "not_found")
    err(client.patch("/api/tasks/alpha", json={"name": None}), 422, "validation_error")
    err(client.patch("/api/tasks/alpha", json={"priority": "x"}), 422)
    err(client.patch("/api/tasks/alpha", json={"id": "other"}), 422)
    err(client.patch("/api/tasks/alpha", json={"schedule": {"cron": "bad"}}), 422,
        "invalid_schedule")
    err(client.patch("/api/tasks/alpha", content=b"{", headers={
        "content-type": "application/json"}), 400, "bad_json")
    # a cycle: beta -> alpha, then alpha -> beta
    assert client.patch("/api/tasks/beta", json={"dependencies": ["alpha"]}).status_code == 200
    err(client.patch("/api/tasks/alpha", json={"dependencies": ["beta"]}), 409,
        "dependency_conflict")
    err(client.patch("/api/tasks/alpha", json={"dependencies": ["ghost"]}), 409)


def test_delete_task(client: TestClient, sched: Scheduler) -> None:
    r = client.delete("/api/tasks/alpha")
    assert r.status_code == 204 and r.content == b""
    assert [t.id for t in sched.list_tasks()] == ["beta"]
    err(client.delete("/api/tasks/alpha"), 404, "not_found")


def test_delete_depended_on_is_409(client: TestClient) -> None:
    client.patch("/api/tasks/beta", json={"dependencies": ["alpha"]})
    err(client.delete("/api/tasks/alpha"), 409, "dependency_conflict")


def test_enable_disable(client: TestClient, sched: Scheduler) -> None:
    r = client.post("/api/tasks/alpha/disable")
    assert r.status_code == 200 and r.json()["state"] == "disabled"
    assert sched.get_task("alpha").enabled is False
    r = client.post("/api/tasks/alpha/enable")
    assert r.json()["state"] == "scheduled" and r.json()["next_run"] is not None
    err(client.post("/api/tasks/nope/enable"), 404)
    err(client.post("/api/tasks/nope/disable"), 404)


def test_state_changes_need_post(client: TestClient) -> None:
    err(client.get("/api/tasks/alpha/disable"), 405, "method_not_allowed")
    err(client.get("/api/tasks/alpha/run"), 405)
    err(client.put("/api/tasks/alpha", json={}), 405)
    assert client.get("/api/tasks/alpha").json()["enabled"] is True


# ----- runs ------------------------------------------------------------------------------
def test_run_now_history_runs_and_stats(client: TestClient, sched: Scheduler,
                                        clock: FakeClock) -> None:
    sched.start()
    settle(sched)  # both interval tasks run once at start
    r = client.post("/api/tasks/alpha/run")
    assert r.status_code == 202 and r.json()["id"] == "alpha"
    settle(sched)
    hist = client.get("/api/tasks/alpha/history").json()
    assert len(hist) == 2 and all(h["status"] == "succeeded" for h in hist)
    assert hist[0]["manual"] is True and hist[1]["manual"] is False
    assert isinstance(hist[0]["result"], float) and hist[0]["attempts"] == 1
    assert hist[0]["duration"] is not None
    beta = client.get("/api/tasks/beta/history?limit=1").json()
    assert len(beta) == 1 and beta[0]["status"] == "failed"
    assert beta[0]["error"] == "ValueError: boom"

    runs = client.get("/api/runs").json()
    assert len(runs) == 3
    assert [r["task_id"] for r in client.get("/api/runs?task=beta").json()] == ["beta"]
    failed = client.get("/api/runs?status=failed").json()
    assert [r["task_id"] for r in failed] == ["beta"]
    assert len(client.get("/api/runs?limit=1").json()) == 1
    assert client.get("/api/runs?status=succeeded&limit=1").json()[0]["task_id"] == "alpha"
    assert client.get("/api/runs?task=unknown").json() == []

    stats = client.get("/api/stats").json()
    assert stats["total_tasks"] == 2 and stats["total_runs"] == 3
    assert stats["total_errors"] == 1 and stats["enabled_tasks"] == 2
    assert client.get("/api/tasks/beta").json()["last_error"] == "ValueError: boom"


def test_run_and_history_errors(client: TestClient) -> None:
    err(client.post("/api/tasks/nope/run"), 404)
    err(client.get("/api/tasks/nope/history"), 404)
    err(client.get("/api/tasks/alpha/history?limit=0"), 422, "validation_error")
    err(client.get("/api/tasks/alpha/history?limit=many"), 422)
    err(client.get("/api/runs?limit=100000"), 422)
    msg = err(client.get("/api/runs?status=exploded"), 422)
    assert "exploded" in msg


def test_failing_import_string_handler_records_failure(client: TestClient, sched: Scheduler
                                                       ) -> None:
    r = client.post("/api/tasks", json=new_task(id="bad", handler=FAILING_HANDLER))
    assert r.status_code == 201
    sched.start()
    settle(sched)
    assert client.get("/api/tasks/bad/history").json()[0]["status"] == "failed"


# ----- service routes --------------------------------------------------------------------
def test_healthz(client: TestClient, sched: Scheduler) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["scheduler"] == "stopped" and body["tasks"] == 2
    sched.start()
    assert client.get("/healthz").json()["scheduler"] == "running"


def test_metrics_endpoint_is_prometheus_text(client: TestClient) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "tickwork_tasks" in r.text


def test_unknown_route_is_json_404(client: TestClient) -> None:
    err(client.get("/api/nothing"), 404, "not_found")


def test_openapi_documents_error_shape(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    for p in ["/api/tasks", "/api/tasks/{task_id}", "/api/tasks/{task_id}/enable",
              "/api/tasks/{task_id}/disable", "/api/tasks/{task_id}/run",
              "/api/tasks/{task_id}/history", "/api/runs", "/api/stats", "/api/events",
              "/healthz", "/metrics"]:
        assert p in paths, p
    assert "/" not in paths and "/login" not in paths  # HTML stays out of the API doc
    post = paths["/api/tasks"]["post"]["responses"]
    assert post["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    assert "HTTPValidationError" not in json.dumps(doc)


def test_internal_errors_are_json_500() -> None:
    class Broken(Scheduler):
        def get_stats(self) -> dict[str, int]:
            raise RuntimeError("secret-internals")

    s = Broken(timezone="UTC")
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        r = c.get("/api/stats")
        err(r, 500, "internal_error")
        assert "secret-internals" not in r.text  # no internals leak to the client


# ----- server-sent events (real server) --------------------------------------------------
class CountingScheduler(Scheduler):
    """Counts live subscriptions through the public ``subscribe`` API."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.active = 0
        self._count_lock = threading.Lock()

    def subscribe(self, callback: Callable[[Event], None],
                  events: Any = None) -> Callable[[], None]:
        unsub = super().subscribe(callback, events)
        with self._count_lock:
            self.active += 1

        def wrapped() -> None:
            with self._count_lock:
                self.active -= 1
            unsub()
        return wrapped


def test_events_stream_live_runs_keepalive_and_cleanup() -> None:
    s = CountingScheduler(timezone="UTC", max_retries=0)
    s.add_task(Task(id="job", handler=OK_HANDLER, schedule=every(hours=1), enabled=False))
    s.start()
    app = create_app(s)
    app.state.keepalive = 0.2
    server, thread, url = serve(app)
    try:
        base = s.active  # the metrics subscription
        seen: list[dict[str, Any]] = []
        comments: list[str] = []
        with httpx.Client(base_url=url, timeout=10) as c, \
                c.stream("GET", "/api/events") as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            wait_for(lambda: s.active == base + 1, what="SSE subscription")
            c2 = httpx.Client(base_url=url, timeout=10)
            assert c2.post("/api/tasks/job/run").status_code == 202
            c2.close()
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                elif line.startswith(":"):
                    comments.append(line)
                if any(e["type"] == "run_succeeded" for e in seen) and \
                        any("keep-alive" in cm for cm in comments):
                    break
        types = [e["type"] for e in seen]
        assert "run_started" in types and "run_succeeded" in types
        done = next(e for e in seen if e["type"] == "run_succeeded")
        assert done["task_id"] == "job" and done["record"]["status"] == "succeeded"
        assert done["record"]["manual"] is True
        # The client went away: its subscription is dropped.
        wait_for(lambda: s.active == base, what="SSE unsubscribe after disconnect")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        s.stop(timeout=5)


def test_live_server_fixture_serves_tasks(live_server: LiveServer) -> None:
    r = httpx.get(live_server.url + "/api/tasks", timeout=10)
    assert {t["id"] for t in r.json()} == {"report", "cleanup", "broken"}
    assert live_server.sched.get_task("report").state in (TaskState.SCHEDULED,
                                                          TaskState.RUNNING)


def test_close_streams_ends_open_event_streams() -> None:
    """uvicorn's graceful shutdown waits for open responses: the runtime ends SSE first."""
    s = CountingScheduler(timezone="UTC")
    app = create_app(s)
    server, thread, url = serve(app)
    try:
        base = s.active
        with httpx.Client(base_url=url, timeout=10) as c, \
                c.stream("GET", "/api/events") as resp:
            wait_for(lambda: s.active == base + 1, what="SSE subscription")
            app.state.close_streams()
            lines = list(resp.iter_lines())  # returns only because the server ended it
        assert ": connected" in lines
        wait_for(lambda: s.active == base, what="unsubscribe")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        s.stop(timeout=5)
