"""The HTTP API (API.md section 6): JSON routes, server-sent events, health and metrics.

Why FastAPI: the OpenAPI document is generated from the typed routes and pydantic models
below, so it cannot drift from the code, and schemathesis checks every route against it.
FastAPI is Starlette underneath, so SSE, middleware and the HTML pages need nothing else.

Everything goes through the scheduler's public API (``add_task`` ... ``subscribe``).
Errors are always ``{"error": {"code", "message"}}``: 400 unparsable JSON, 401 no/wrong
token, 403 cross-origin state change, 404 unknown task or route, 405 wrong method, 409
duplicate id or dependency conflict, 422 invalid input (FastAPI's default 422 body is
replaced), 503 store unavailable. A 500 (same shape) means a bug in tickwork.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import (
    DependencyError,
    DuplicateTaskError,
    Event,
    InvalidScheduleError,
    RetryPolicy,
    RunRecord,
    RunStatus,
    Schedule,
    Scheduler,
    SchedulerError,
    StoreError,
    Task,
    TaskNotFoundError,
    TaskState,
    __version__,
    at,
    cron,
    every,
)
from .._durations import parse_duration
from .auth import AuthMiddleware
from .metrics import CONTENT_TYPE, SchedulerMetrics

log = logging.getLogger("tickwork.service")
T = TypeVar("T")

HANDLER_RE = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$"
TASK_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,200}$"
MAX_SECONDS = 10 * 365 * 86400.0  # ten years: beyond that a duration is a typo
KEEPALIVE_SECONDS = 15.0
QUEUE_LIMIT = 1000  # per SSE client; a client that falls this far behind loses events


# ----- errors --------------------------------------------------------------------------
class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ErrorBody(BaseModel):
    code: str = Field(description="machine-readable, e.g. not_found, validation_error")
    message: str = Field(description="what was wrong, naming the field and value")


class ErrorOut(BaseModel):
    error: ErrorBody


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


def _scheduler_error(exc: Exception) -> ApiError:
    if isinstance(exc, TaskNotFoundError):
        return ApiError(404, "not_found", _msg(exc))
    if isinstance(exc, DuplicateTaskError):
        return ApiError(409, "duplicate", _msg(exc))
    if isinstance(exc, DependencyError):
        return ApiError(409, "dependency_conflict", _msg(exc))
    if isinstance(exc, InvalidScheduleError):
        return ApiError(422, "invalid_schedule", _msg(exc))
    if isinstance(exc, StoreError):
        return ApiError(503, "store_unavailable", _msg(exc))
    return ApiError(422, "invalid_value", _msg(exc))


def _msg(exc: BaseException) -> str:
    # KeyError's str() adds quotes; args[0] is the message the library wrote.
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def guarded(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call the scheduler, turning its documented errors into API errors."""
    try:
        return fn(*args, **kwargs)
    except (SchedulerError, ValueError, TypeError, OverflowError) as exc:
        raise _scheduler_error(exc) from exc


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": desc}
    for code, desc in [
        (400, "Unparsable JSON body"),
        (401, "Missing or wrong token"),
        (403, "Cross-origin state-changing request"),
        (404, "Unknown task or route"),
        (405, "Method not allowed"),
        (409, "Duplicate id or dependency conflict"),
        (422, "Invalid input (the message names the field and value)"),
        (503, "Store unavailable"),
    ]
}


# ----- models --------------------------------------------------------------------------
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS)]
Duration = Annotated[
    str | Seconds,
    Field(description="seconds, or a Go-style duration string such as '1h30m'"),
]


class ScheduleIn(BaseModel):
    """Exactly one of ``interval``, ``cron`` or ``at``."""

    model_config = ConfigDict(extra="forbid")
    interval: Duration | None = None
    cron: str | None = Field(None, max_length=1000, examples=["*/15 * * * *"])
    at: list[datetime] | None = Field(None, max_length=1000)
    timezone: str | None = Field(None, max_length=100, examples=["Europe/Berlin"])
    seconds: bool = Field(False, description="cron with a leading seconds field")
    jitter: Duration | None = None
    fixed_rate: bool = False
    start_at: datetime | None = None


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=TASK_ID_PATTERN, examples=["cleanup"])
    name: str = Field("", max_length=1000)
    description: str = Field("", max_length=10000)
    schedule: ScheduleIn
    handler: str | None = Field(None, pattern=HANDLER_RE, max_length=500,
                                description="'package.module:function' import string")
    command: list[Annotated[str, Field(max_length=10000)]] | str | None = Field(
        None, description="argv list (no shell), or a string with shell=true")
    shell: bool = False
    cwd: str | None = Field(None, max_length=4096)
    env: dict[str, str] | None = None
    enabled: bool = True
    priority: int = Field(50, ge=-1_000_000_000, le=1_000_000_000)
    dependencies: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list)
    retries: int | None = Field(None, ge=0, le=1000)
    retry_delay: Duration | None = None
    timeout: Duration | None = None
    max_instances: int = Field(1, ge=1, le=10000)
    misfire_grace: Duration | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class TaskPatch(BaseModel):
    """Fields to change; absent fields stay, ``null`` clears an optional one."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=1000)
    description: str | None = Field(None, max_length=10000)
    schedule: ScheduleIn | None = None
    enabled: bool | None = None
    priority: int | None = Field(None, ge=-1_000_000_000, le=1_000_000_000)
    dependencies: list[Annotated[str, Field(max_length=200)]] | None = None
    retries: int | None = Field(None, ge=0, le=1000)
    retry_delay: Duration | None = None
    timeout: Duration | None = None
    max_instances: int | None = Field(None, ge=1, le=10000)
    misfire_grace: Duration | None = None
    metadata: dict[str, str] | None = None


class ScheduleOut(BaseModel):
    type: Literal["interval", "once", "cron"]
    description: str = Field(description="the schedule in words")
    interval: float | None = Field(None, description="seconds")
    times: list[datetime] = Field(default_factory=list)
    cron: str | None = None
    timezone: str | None = None
    seconds: bool = False
    fixed_rate: bool = False
    start_at: datetime | None = None
    jitter: float | None = None


class RetryOut(BaseModel):
    max_retries: int
    delay: float
    backoff: float
    max_delay: float
    jitter: float


class TaskOut(BaseModel):
    id: str
    name: str
    description: str
    handler: str | None = Field(
        description="import string, 'command:<id>' for command tasks, else a label")
    schedule: ScheduleOut
    enabled: bool
    state: TaskState
    priority: int
    dependencies: list[str]
    retry: RetryOut | None
    timeout: float | None
    max_instances: int
    misfire_grace: float | None
    metadata: dict[str, str]
    last_run: datetime | None
    next_run: datetime | None
    run_count: int
    error_count: int
    last_error: str | None
    last_status: RunStatus | None


class RunOut(BaseModel):
    run_id: str
    task_id: str
    scheduled_for: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration: float | None = Field(description="seconds")
    status: RunStatus
    attempts: int
    error: str | None
    result: Any = Field(None, description="the handler's return value (JSON) or its repr")
    instance_id: str | None
    manual: bool


class Health(BaseModel):
    status: Literal["ok"]
    scheduler: Literal["running", "stopped"]
    tasks: int
    version: str


# ----- conversions ---------------------------------------------------------------------
def _seconds(value: str | float | None, fld: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            td = parse_duration(value, field=fld)
        except (ValueError, OverflowError) as exc:
            raise ApiError(422, "validation_error", str(exc)) from None
        secs = td.total_seconds()
        if not 0 <= secs <= MAX_SECONDS:
            raise ApiError(422, "validation_error",
                           f"{fld}: must be between 0 and {MAX_SECONDS:.0f}s, got {value!r}")
        return secs
    return float(value)


def _td(value: str | float | None, fld: str) -> timedelta | None:
    secs = _seconds(value, fld)
    return None if secs is None else timedelta(seconds=secs)


def schedule_from(body: ScheduleIn) -> Schedule:
    given = [k for k in ("interval", "cron", "at") if getattr(body, k) is not None]
    if len(given) != 1:
        raise ApiError(422, "validation_error",
                       "schedule: give exactly one of 'interval', 'cron' or 'at', got "
                       + (", ".join(given) or "none"))
    jitter = _td(body.jitter, "schedule.jitter")
    try:
        if body.interval is not None:
            iv = _td(body.interval, "schedule.interval")
            if body.timezone is not None:
                raise ApiError(422, "validation_error",
                               "schedule.timezone: only cron schedules take a timezone")
            return every(iv, start_at=body.start_at, jitter=jitter, fixed_rate=body.fixed_rate)
        if body.cron is not None:
            return cron(body.cron, timezone=body.timezone, seconds=body.seconds, jitter=jitter)
        assert body.at is not None
        return at(body.at, jitter=jitter)
    except (SchedulerError, ValueError, OverflowError) as exc:
        raise _scheduler_error(exc) from exc


def _retry(retries: int | None, delay: str | float | None) -> RetryPolicy | None:
    if retries is None and delay is None:
        return None
    d = _td(delay, "retry_delay")
    return RetryPolicy(max_retries=3 if retries is None else retries,
                       delay=timedelta(seconds=5) if d is None else d)


def _import_handler(ref: str) -> None:
    """Reject an import string that does not resolve now (422), rather than orphan it."""
    mod_name, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(mod_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # any import-time error is the caller's bad input
        raise ApiError(422, "validation_error",
                       f"handler: cannot import {ref!r}: {type(exc).__name__}: {exc}") from None
    if not callable(obj):
        raise ApiError(422, "validation_error", f"handler: {ref!r} is not callable")


def _command_handler(sched: Scheduler, body: TaskIn) -> str:
    """Register a ``CommandRunner`` (part A's module) and return its handler name.

    The runner is registered as ``"command:<id>"``, the name the runtime uses for config
    command tasks. Its argv is not persisted: after a restart, an API-created command task
    is orphaned (listed, never run) unless the config declares it too.
    """
    try:
        commands = importlib.import_module("tickwork.service.commands")
    except ImportError:
        raise ApiError(422, "validation_error",
                       "command: command tasks are not available in this build") from None
    cmd = body.command
    if isinstance(cmd, str) and not body.shell:
        raise ApiError(422, "validation_error",
                       f"command: a string command needs shell=true, got {cmd!r}")
    if isinstance(cmd, list) and (not cmd or body.shell):
        raise ApiError(422, "validation_error",
                       "command: give a non-empty argv list (or a string with shell=true)")
    if isinstance(cmd, str) and not cmd.strip():
        raise ApiError(422, "validation_error", "command: empty shell command")
    assert cmd is not None
    spec = commands.CommandSpec(task_id=body.id, argv=cmd if isinstance(cmd, str) else tuple(cmd),
                                shell=body.shell, cwd=body.cwd, env=dict(body.env or {}))
    name: str = commands.command_handler_name(body.id)
    # Refuse a duplicate before registering, so an existing task's runner is never replaced.
    try:
        sched.get_task(body.id)
    except TaskNotFoundError:
        pass
    else:
        raise ApiError(409, "duplicate", f"task {body.id!r} already exists")
    sched.register_handler(name, commands.CommandRunner(spec))
    return name


def task_from(sched: Scheduler, body: TaskIn) -> Task:
    if (body.handler is None) == (body.command is None):
        raise ApiError(422, "validation_error",
                       "task: give exactly one of 'handler' or 'command'")
    schedule = schedule_from(body.schedule)
    retry = _retry(body.retries, body.retry_delay)
    timeout = _td(body.timeout, "timeout")
    grace = _td(body.misfire_grace, "misfire_grace")
    if body.handler is not None:
        _import_handler(body.handler)
        handler = body.handler
    else:
        handler = _command_handler(sched, body)
    return Task(
        id=body.id, name=body.name, description=body.description, handler=handler,
        schedule=schedule, enabled=body.enabled, priority=body.priority,
        dependencies=list(body.dependencies), retry=retry, timeout=timeout,
        max_instances=body.max_instances, misfire_grace=grace, metadata=dict(body.metadata),
    )


def _secs_of(v: timedelta | float | None) -> float | None:
    if v is None:
        return None
    return v.total_seconds() if isinstance(v, timedelta) else float(v)


def handler_label(task: Task) -> str | None:
    """The import string (or ``command:<id>``), else ``module:qualname`` of the callable."""
    h = task.handler
    if h is None or isinstance(h, str):
        return h
    name = getattr(h, "__qualname__", None) or type(h).__qualname__
    mod = getattr(h, "__module__", None) or type(h).__module__
    return f"{mod}:{name}"


def task_out(t: Task) -> TaskOut:
    s = t.schedule
    try:
        desc = s.describe()
    except Exception:  # describe() is best effort; the schedule itself stays valid
        desc = str(s.cron or s.type)
    r = t.retry
    return TaskOut(
        id=t.id, name=t.name, description=t.description, handler=handler_label(t),
        schedule=ScheduleOut(
            type=s.type.value, description=desc, interval=_secs_of(s.interval),
            times=list(s.times), cron=s.cron, timezone=s.timezone, seconds=s.seconds,
            fixed_rate=s.fixed_rate, start_at=s.start_at, jitter=_secs_of(s.jitter)),
        enabled=t.enabled, state=t.state, priority=int(t.priority),
        dependencies=list(t.dependencies),
        retry=None if r is None else RetryOut(
            max_retries=r.max_retries, delay=r.delay.total_seconds(), backoff=float(r.backoff),
            max_delay=r.max_delay.total_seconds(), jitter=float(r.jitter)),
        timeout=_secs_of(t.timeout), max_instances=t.max_instances,
        misfire_grace=_secs_of(t.misfire_grace), metadata=dict(t.metadata),
        last_run=t.last_run, next_run=t.next_run, run_count=t.run_count,
        error_count=t.error_count, last_error=t.last_error, last_status=t.last_status,
    )


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        return repr(value)[:1024]


def run_out(r: RunRecord) -> RunOut:
    d = r.duration
    return RunOut(
        run_id=r.run_id, task_id=r.task_id, scheduled_for=r.scheduled_for,
        started_at=r.started_at, finished_at=r.finished_at,
        duration=None if d is None else d.total_seconds(), status=r.status,
        attempts=r.attempts, error=r.error, result=jsonable(r.result),
        instance_id=r.instance_id, manual=r.manual,
    )


def event_payload(ev: Event) -> dict[str, Any]:
    return {
        "type": str(ev.type), "task_id": ev.task_id, "run_id": ev.run_id,
        "at": None if ev.at is None else ev.at.isoformat(), "attempt": ev.attempt,
        "error": ev.error,
        "record": None if ev.record is None else run_out(ev.record).model_dump(mode="json"),
    }


# ----- the app -------------------------------------------------------------------------
TaskId = Annotated[str, Path(description="task id")]


def create_app(sched: Scheduler, *, token: str | None = None,
               config: object | None = None) -> FastAPI:
    """The service app for ``sched``. With ``token``, every route but /healthz needs it.

    ``config`` is the runtime's parsed config (shown nowhere sensitive; reserved for the
    UI's title). The app never starts or stops the scheduler: its owner does.
    """
    metrics = SchedulerMetrics(sched)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        metrics.close()

    app = FastAPI(
        title="tickwork", version=__version__, lifespan=lifespan,
        description="Background task scheduler: tasks, runs, live events, health, metrics.",
        responses=ERROR_RESPONSES, docs_url="/docs", redoc_url=None,
    )
    app.state.sched = sched
    app.state.metrics = metrics
    app.state.token = token or None
    app.state.config = config
    app.state.keepalive = KEEPALIVE_SECONDS
    # One closer per open SSE stream. uvicorn's graceful shutdown waits for every open
    # response, and an event stream never ends by itself: the runtime calls
    # ``app.state.close_streams()`` (thread-safe) before asking uvicorn to exit.
    closers: set[Callable[[], None]] = set()

    def close_streams() -> None:
        for close in list(closers):
            close()

    app.state.close_streams = close_streams
    _install_error_handlers(app)

    @app.get("/healthz", response_model=Health, tags=["service"])
    def healthz() -> Health:
        """Liveness: always 200 while the process serves; ``scheduler`` says if it runs."""
        running = bool(getattr(sched, "running", False))
        return Health(status="ok", scheduler="running" if running else "stopped",
                      tasks=len(sched.list_tasks()), version=__version__)

    @app.get("/metrics", tags=["service"], response_class=Response,
             responses={200: {"content": {"text/plain": {}},
                              "description": "Prometheus text format"}})
    def get_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/api/tasks", response_model=list[TaskOut], tags=["tasks"])
    def list_tasks() -> list[TaskOut]:
        return [task_out(t) for t in sched.list_tasks()]

    @app.post("/api/tasks", response_model=TaskOut, status_code=201, tags=["tasks"])
    def create_task(body: TaskIn) -> TaskOut:
        task = task_from(sched, body)
        return task_out(guarded(sched.add_task, task))

    @app.get("/api/tasks/{task_id}", response_model=TaskOut, tags=["tasks"])
    def get_task(task_id: TaskId) -> TaskOut:
        return task_out(guarded(sched.get_task, task_id))

    @app.patch("/api/tasks/{task_id}", response_model=TaskOut, tags=["tasks"])
    def patch_task(task_id: TaskId, body: TaskPatch) -> TaskOut:
        current = guarded(sched.get_task, task_id)
        fields = _patch_fields(body, current)
        if not fields:
            return task_out(current)
        return task_out(guarded(sched.update_task, task_id, **fields))

    @app.delete("/api/tasks/{task_id}", status_code=204, response_class=Response,
                tags=["tasks"])
    def delete_task(task_id: TaskId) -> Response:
        guarded(sched.remove_task, task_id)
        return Response(status_code=204)

    @app.post("/api/tasks/{task_id}/enable", response_model=TaskOut, tags=["tasks"])
    def enable_task(task_id: TaskId) -> TaskOut:
        guarded(sched.enable_task, task_id)
        return task_out(guarded(sched.get_task, task_id))

    @app.post("/api/tasks/{task_id}/disable", response_model=TaskOut, tags=["tasks"])
    def disable_task(task_id: TaskId) -> TaskOut:
        guarded(sched.disable_task, task_id)
        return task_out(guarded(sched.get_task, task_id))

    @app.post("/api/tasks/{task_id}/run", status_code=202, response_model=TaskOut,
              tags=["tasks"])
    def run_task(task_id: TaskId) -> TaskOut:
        """One extra execution as soon as a worker is free (202: queued, not finished)."""
        guarded(sched.run_now, task_id)
        return task_out(guarded(sched.get_task, task_id))

    @app.get("/api/tasks/{task_id}/history", response_model=list[RunOut], tags=["runs"])
    def task_history(task_id: TaskId,
                     limit: Annotated[int, Query(ge=1, le=10000)] = 100) -> list[RunOut]:
        guarded(sched.get_task, task_id)
        return [run_out(r) for r in guarded(sched.get_history, task_id, limit)]

    @app.get("/api/runs", response_model=list[RunOut], tags=["runs"])
    def list_runs(
        limit: Annotated[int, Query(ge=1, le=10000)] = 100,
        task: Annotated[str | None, Query(max_length=200, description="task id")] = None,
        status: Annotated[RunStatus | None, Query()] = None,
    ) -> list[RunOut]:
        """Newest first, across tasks unless ``task`` is given."""
        fetch = limit if status is None else 10000
        recs = guarded(sched.get_history, task, fetch)
        if status is not None:
            recs = [r for r in recs if r.status is status][:limit]
        return [run_out(r) for r in recs]

    @app.get("/api/stats", response_model=dict[str, int], tags=["service"])
    def stats() -> dict[str, int]:
        return dict(sched.get_stats())

    @app.get("/api/events", tags=["service"], response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "Server-sent events, one JSON event each"}})
    async def events(request: Request) -> StreamingResponse:
        """Every scheduler event as it happens (``data: {json}``), plus keep-alives."""
        return StreamingResponse(_event_stream(request, sched, app.state.keepalive, closers),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    from .web import install as install_web

    install_web(app, sched)
    app.add_middleware(AuthMiddleware, token=token or None)
    return app


def _patch_fields(body: TaskPatch, current: Task) -> dict[str, Any]:
    given = body.model_fields_set
    out: dict[str, Any] = {}
    for name in ("name", "description", "enabled", "priority", "max_instances", "metadata",
                 "dependencies"):
        if name in given:
            value = getattr(body, name)
            if value is None:
                raise ApiError(422, "validation_error", f"{name}: may not be null")
            out[name] = list(value) if name == "dependencies" else value
    if "schedule" in given:
        if body.schedule is None:
            raise ApiError(422, "validation_error", "schedule: may not be null")
        out["schedule"] = schedule_from(body.schedule)
    if "timeout" in given:
        out["timeout"] = _td(body.timeout, "timeout")
    if "misfire_grace" in given:
        out["misfire_grace"] = _td(body.misfire_grace, "misfire_grace")
    if "retries" in given or "retry_delay" in given:
        base = current.retry or RetryPolicy()
        retries = body.retries if "retries" in given else base.max_retries
        delay = _td(body.retry_delay, "retry_delay") if "retry_delay" in given else base.delay
        out["retry"] = RetryPolicy(max_retries=base.max_retries if retries is None else retries,
                                   delay=base.delay if delay is None else delay,
                                   backoff=base.backoff, max_delay=base.max_delay,
                                   jitter=base.jitter)
    return out


async def _event_stream(request: Request, sched: Scheduler, keepalive: float,
                        closers: set[Callable[[], None]]) -> AsyncIterator[bytes]:
    """Scheduler threads hand events to this client's queue via ``call_soon_threadsafe``.

    The queue is bounded: a stalled client loses events instead of growing memory. The
    subscription is dropped when the client disconnects (the generator is closed).
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=QUEUE_LIMIT)

    def put(item: dict[str, Any]) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(item)

    def on_event(ev: Event) -> None:  # runs on a scheduler thread
        payload = event_payload(ev)
        with contextlib.suppress(RuntimeError):  # loop closed: the client is gone
            loop.call_soon_threadsafe(put, payload)

    def close() -> None:  # any thread: wake the stream with the end marker
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_force_put, queue, _END)

    unsubscribe = sched.subscribe(on_event)
    closers.add(close)
    try:
        yield b"retry: 2000\n: connected\n\n"
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=keepalive)
            except TimeoutError:
                if await request.is_disconnected():
                    break
                yield b": keep-alive\n\n"
                continue
            if item is _END:
                break
            data = json.dumps(item, separators=(",", ":"))
            # Unnamed events: EventSource.onmessage sees them all; the type is in the data.
            yield f"data: {data}\n\n".encode()
    finally:
        closers.discard(close)
        unsubscribe()


_END: dict[str, Any] = {"type": "end"}  # identity marks the end of a stream


def _force_put(queue: asyncio.Queue[dict[str, Any]], item: dict[str, Any]) -> None:
    """Put ``item`` even into a full queue (dropping the oldest event)."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "bad_json", "request body is not valid JSON")
        parts = []
        for e in errors[:5]:
            loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body",))
            value = e.get("input")
            shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
            if len(shown) > 100:
                shown = shown[:97] + "..."
            parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')} (got {shown})")
        return error_response(422, "validation_error", "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, re.sub(r"\W+", "_", str(exc.detail)).strip("_").lower() or "error")
        message = "no such route" if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, code, message,
                              headers=dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error in the HTTP API", exc_info=exc)
        return error_response(500, "internal_error",
                              f"a bug in tickwork: {type(exc).__name__} (see the server log)")
