"""The composition root: config -> store -> scheduler -> reconcile -> web server.

``build_scheduler(config)`` makes a Scheduler, registers one subprocess runner per command
task (handler name ``"command:<id>"``), attaches the store (which loads what it holds) and
reconciles the config's tasks into it. ``serve(...)`` starts the scheduler in its
background threads and runs uvicorn in the calling (main) thread; SIGINT/SIGTERM stop the
server, then the scheduler (which cancels running executions: command tasks get their
process group killed) and save state.

Reconciling, task by task (in dependency order, so a new dependency exists before the task
that needs it):

* in the config, not in the store: added;
* in both, same ``tickwork.config_hash``: left alone, so changes made at runtime through
  the API or CLI (disable, priority...) survive a restart until the file itself changes;
* in both, different hash (or not config-managed yet): the config's definition replaces
  the stored one (``update_task``), keeping its history and counters;
* config-managed in the store but gone from the file: disabled, marked
  ``tickwork.config_removed``, never deleted (its history stays visible).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..scheduler import Scheduler
from ..stores import open_store
from .commands import CommandRunner, command_handler_name
from .config import HASH_KEY, SOURCE_CONFIG, SOURCE_KEY, ServiceConfig, TaskConfig, is_loopback

log = logging.getLogger("tickwork.service")

REMOVED_KEY = "tickwork.config_removed"
STOP_TIMEOUT = 30.0
_DEFINITION = ("name", "description", "handler", "schedule", "enabled", "priority",
               "dependencies", "retry", "timeout", "max_instances", "misfire_grace", "metadata")


class ServiceError(Exception):
    """The service cannot start; the message says why and what to do."""


@dataclass(slots=True)
class ReconcileReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(v)} {k}" for k, v in (("added", self.added), ("updated", self.updated),
                                               ("unchanged", self.unchanged),
                                               ("disabled (removed from config)", self.disabled))
                 if v]
        return ", ".join(parts) or "no tasks"


def build_scheduler(config: ServiceConfig, *, logger: logging.Logger | None = None,
                    ) -> tuple[Scheduler, ReconcileReport]:
    sc = config.scheduler
    sched = Scheduler(logger, max_workers=sc.max_workers, timezone=sc.timezone,
                      max_retries=sc.max_retries, retry_delay=sc.retry_delay)
    register_commands(sched, config)
    sched.set_persistence(open_store(sc.store))
    return sched, reconcile(sched, config)


def register_commands(sched: Scheduler, config: ServiceConfig) -> None:
    """Register the runner of each command task under ``"command:<id>"``."""
    for tc in config.tasks:
        if tc.command is not None:
            sched.register_handler(command_handler_name(tc.id), CommandRunner(tc.command))


def reconcile(sched: Scheduler, config: ServiceConfig) -> ReconcileReport:
    """Bring the scheduler's (store's) tasks in line with the config; see the module doc."""
    report = ReconcileReport()
    existing = {t.id: t for t in sched.list_tasks()}
    for tc in _dependency_order(config.tasks):
        cur = existing.get(tc.id)
        if cur is None:
            sched.add_task(tc.task)
            report.added.append(tc.id)
            continue
        md = cur.metadata
        if (md.get(SOURCE_KEY) == SOURCE_CONFIG and md.get(HASH_KEY) == tc.digest
                and REMOVED_KEY not in md):
            report.unchanged.append(tc.id)
            continue
        if md.get(SOURCE_KEY) != SOURCE_CONFIG:
            log.warning("task %r exists in the store but not from the config: "
                        "the config now manages it", tc.id)
        sched.update_task(tc.id, **{k: getattr(tc.task, k) for k in _DEFINITION})
        report.updated.append(tc.id)
    wanted = {tc.id for tc in config.tasks}
    for tid, cur in sorted(existing.items()):
        md = cur.metadata
        if tid in wanted or md.get(SOURCE_KEY) != SOURCE_CONFIG or REMOVED_KEY in md:
            continue
        new_md = {k: v for k, v in md.items() if k != HASH_KEY}
        new_md[REMOVED_KEY] = "true"
        sched.update_task(tid, enabled=False, metadata=new_md)
        report.disabled.append(tid)
    return report


def _dependency_order(tasks: tuple[TaskConfig, ...]) -> list[TaskConfig]:
    by_id = {tc.id: tc for tc in tasks}
    done: set[str] = set()
    out: list[TaskConfig] = []

    def visit(tc: TaskConfig) -> None:
        if tc.id in done:
            return
        done.add(tc.id)  # the config is checked acyclic; this only guards recursion
        for dep in tc.task.dependencies:
            if dep in by_id:
                visit(by_id[dep])
        out.append(tc)

    for tc in tasks:
        visit(tc)
    return out


# ----- serving ------------------------------------------------------------------------------
def resolve_token(config: ServiceConfig, host: str, token: str | None) -> str | None:
    """The API token (explicit, else from ``[web] token_env``); refuse public hosts without."""
    import os

    tok = token if token is not None else os.environ.get(config.web.token_env) or None
    if tok is None and not is_loopback(host):
        raise ServiceError(
            f"web: host {host!r} is not a loopback address, so the API needs a token: "
            f"set the environment variable {config.web.token_env} (see [web] token_env), "
            "or bind to 127.0.0.1")
    return tok


def load_app_factory() -> tuple[Callable[..., Any] | None, str | None]:
    """``create_app`` from ``tickwork.service.api``, or None and the reason it is missing."""
    try:
        mod = importlib.import_module("tickwork.service.api")
        importlib.import_module("uvicorn")
    except ModuleNotFoundError as e:
        if e.name in ("fastapi", "uvicorn", "starlette", "prometheus_client"):
            return None, f"{e.name} is not installed (pip install 'tickwork[web]')"
        if e.name in ("tickwork.service.api",):
            return None, "this version has no web API module (tickwork.service.api)"
        raise
    factory = getattr(mod, "create_app", None)
    if not callable(factory):
        return None, "tickwork.service.api has no create_app()"
    return factory, None


def bind(host: str, port: int) -> socket.socket:
    """Listen on host:port now, so a busy port is a clear error before anything starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ServiceError(f"web: host: cannot resolve {host!r}: {e.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise ServiceError(f"web: cannot listen on {host}:{port}: {e.strerror or e} "
                           "(is another tickwork running? choose another port)") from None
    sock.set_inheritable(True)
    return sock


def serve(config: ServiceConfig, *, host: str | None = None, port: int | None = None,
          token: str | None = None, out: TextIO | None = None,
          stop_after: float | None = None) -> int:
    """Run the service until SIGINT/SIGTERM (or ``stop_after`` seconds); returns an exit code."""
    out = out or sys.stdout
    host = host or config.web.host
    port = config.web.port if port is None else port
    tok = resolve_token(config, host, token)
    factory, why = load_app_factory()
    sock = bind(host, port) if factory is not None else None
    stop = threading.Event()
    # Signals are ours from here on: a SIGTERM during start-up must stop gracefully too,
    # not kill the process before the handlers of the serving loop are installed.
    with _signals(stop.set):
        sched, report = build_scheduler(config)
        print(f"tickwork: {len(config.tasks)} config tasks ({report.summary()}); "
              f"store {_redacted(config.scheduler.store)}", file=out, flush=True)
        if stop_after is not None:
            timer = threading.Timer(stop_after, stop.set)
            timer.daemon = True
            timer.start()
        sched.start()
        try:
            if factory is None or sock is None:
                print(f"tickwork: WARNING: the web UI and API are unavailable: {why}; "
                      "running the scheduler only (Ctrl-C stops)", file=out, flush=True)
                while not stop.wait(0.5):
                    pass
            else:
                _serve_http(factory, sched, config, tok, sock, stop, out)
        finally:
            print("tickwork: stopping (waiting for running tasks)...", file=out, flush=True)
            sched.stop(timeout=STOP_TIMEOUT)
            print("tickwork: stopped", file=out, flush=True)
    return 0


def _serve_http(factory: Callable[..., Any], sched: Scheduler, config: ServiceConfig,
                token: str | None, sock: socket.socket, stop: threading.Event,
                out: TextIO) -> None:
    import uvicorn

    app = factory(sched, token=token, config=config)

    class Server(uvicorn.Server):
        # We own the signals: uvicorn's handlers would re-raise SIGINT after shutdown,
        # turning a graceful stop into a KeyboardInterrupt before the scheduler stopped.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        def install_signal_handlers(self) -> None:
            pass

    server = Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                   timeout_graceful_shutdown=5))

    signalled = threading.Event()

    def request_stop() -> None:
        # Open event streams (a browser tab on the dashboard) never end by themselves:
        # close them first, or uvicorn waits for them forever.
        close = getattr(app.state, "close_streams", None)
        if callable(close):
            close()
        server.should_exit = True
        stop.set()

    def on_signal() -> None:
        if signalled.is_set():  # a second Ctrl-C: stop now, without waiting for requests
            server.force_exit = True
        signalled.set()
        request_stop()

    def stop_on_request() -> None:
        stop.wait()
        request_stop()

    threading.Thread(target=stop_on_request, daemon=True).start()
    h, p = sock.getsockname()[:2]
    shown = f"[{h}]" if ":" in h else h
    print(f"tickwork: serving on http://{shown}:{p}/ (Ctrl-C stops)", file=out, flush=True)
    with _signals(on_signal):
        server.run(sockets=[sock])


@contextlib.contextmanager
def _signals(handler: Callable[[], None]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: handler())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _redacted(url: str) -> str:
    from ..stores import _redact

    return _redact(url)


def with_store(config: ServiceConfig, store: str) -> ServiceConfig:
    return dataclasses.replace(config, scheduler=dataclasses.replace(config.scheduler,
                                                                     store=store))


__all__ = ["ReconcileReport", "ServiceError", "build_scheduler", "load_app_factory",
           "reconcile", "register_commands", "resolve_token", "serve", "with_store"]
