"""The service config file (TOML): scheduler settings, web settings and ``[[task]]`` entries.

``load_config(path)`` parses and checks the whole file and raises ``ConfigError`` listing
*every* problem, one per line, each naming where it is (``task 'cleanup': cron: bad minute
'61' ...``), so ``tickwork validate`` shows a user all their typos in one go. Unknown keys
are errors for the same reason: a misspelt ``retires = 3`` must not pass silently.

A config task becomes a ``Task`` whose metadata carries ``tickwork.source = "config"`` and
``tickwork.config_hash`` (a digest of its ``[[task]]`` table): reconciling on start
(``tickwork.service.runtime.reconcile``) uses the digest to tell a task changed in the file
from one changed at runtime through the API, which is left alone until the file changes.

Command tasks (``command = [...]``) get the handler name ``"command:<id>"``; the runtime
registers a subprocess runner under that name (see ``tickwork.service.commands``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from .._durations import to_timedelta
from .._handlers import import_handler
from .._model import TASK_ID_RE, RetryPolicy, Schedule, Task, at, cron, every
from .commands import DEFAULT_KILL_GRACE, CommandSpec, command_handler_name

SOURCE_KEY = "tickwork.source"
HASH_KEY = "tickwork.config_hash"
COMMAND_KEY = "tickwork.command"
SOURCE_CONFIG = "config"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
DEFAULT_TOKEN_ENV = "TICKWORK_TOKEN"

_TOP_KEYS = {"scheduler", "web", "task"}
_SCHED_KEYS = {"store", "max_workers", "timezone", "max_retries", "retry_delay"}
_WEB_KEYS = {"host", "port", "token_env"}
_TASK_KEYS = {
    "id", "name", "description",
    "command", "shell", "cwd", "env", "kill_grace", "handler",
    "cron", "interval", "at", "timezone", "jitter",
    "priority", "depends_on", "retries", "retry_delay", "retry_backoff", "timeout",
    "max_instances", "misfire_grace", "enabled", "metadata",
}


class ConfigError(ValueError):
    """A config that cannot be used; ``errors`` holds one message per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerConfig:
    store: str
    max_workers: int = 32
    timezone: str | None = None
    max_retries: int = 3
    retry_delay: timedelta = timedelta(seconds=5)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token_env: str = DEFAULT_TOKEN_ENV

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskConfig:
    """One ``[[task]]``: the Task to reconcile and, for command tasks, what to run."""

    task: Task
    command: CommandSpec | None = None

    @property
    def id(self) -> str:
        return self.task.id

    @property
    def digest(self) -> str:
        return self.task.metadata[HASH_KEY]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    path: Path | None
    scheduler: SchedulerConfig
    web: WebConfig = field(default_factory=WebConfig)
    tasks: tuple[TaskConfig, ...] = ()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_config(path: str | Path, *, check_imports: bool = True) -> ServiceConfig:
    """Read and check ``path``; ``ConfigError`` lists every problem found."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError([f"{p}: cannot read the config: {e.strerror or e}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError([f"{p}: not UTF-8 text ({e.reason} at byte {e.start})"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{p}: TOML syntax error: {e}"]) from None
    return parse_config(data, path=p.resolve(), check_imports=check_imports)


def parse_config(data: Mapping[str, Any], *, path: Path | None = None,
                 check_imports: bool = True) -> ServiceConfig:
    """Check a parsed TOML document; ``path`` anchors the default store and relative cwds."""
    errors: list[str] = []
    base = path.parent if path is not None else Path.cwd()
    for key in sorted(set(data) - _TOP_KEYS):
        errors.append(f"unknown section or key {key!r} (known: scheduler, web, task)")
    sched = _scheduler(_table(data, "scheduler", errors), path, errors)
    web = _web(_table(data, "web", errors), errors)
    tasks = _tasks(data.get("task", []), base, sched, errors, check_imports)
    if errors:
        raise ConfigError(errors)
    return ServiceConfig(path=path, scheduler=sched, web=web, tasks=tuple(tasks))


# ----- sections ---------------------------------------------------------------------------
def _table(data: Mapping[str, Any], name: str, errors: list[str]) -> Mapping[str, Any]:
    v = data.get(name, {})
    if not isinstance(v, Mapping):
        errors.append(f"{name}: expected a table [{name}], got {_show(v)}")
        return {}
    return v


def _unknown(where: str, table: Mapping[str, Any], known: set[str], errors: list[str]) -> None:
    for key in sorted(set(table) - known):
        hint = _close(key, known)
        more = (f" (did you mean {hint!r}?)" if hint
                else f" (known: {', '.join(sorted(known))})")
        errors.append(f"{where}: unknown key {key!r}{more}")


def _close(key: str, known: set[str]) -> str | None:
    import difflib

    m = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    return m[0] if m else None


def _scheduler(t: Mapping[str, Any], path: Path | None, errors: list[str]) -> SchedulerConfig:
    _unknown("scheduler", t, _SCHED_KEYS, errors)
    default_store = ("memory://" if path is None
                     else f"sqlite:///{path.parent / (path.stem + '.db')}")
    store = t.get("store", default_store)
    if not isinstance(store, str) or "://" not in store:
        errors.append(f"scheduler: store: expected a URL like 'sqlite:///abs/path.db', "
                      f"got {_show(store)}")
        store = default_store
    elif store.split("://", 1)[0].lower() not in (
            "memory", "json", "sqlite", "postgres", "postgresql"):
        errors.append(f"scheduler: store: unknown scheme in {store!r} "
                      "(use memory://, json:///path, sqlite:///path or postgresql://...)")
    mw = _int(t, "max_workers", 32, "scheduler", errors, minimum=1)
    tz = t.get("timezone")
    if tz is not None:
        tz = _zone(tz, "scheduler: timezone", errors)
    mr = _int(t, "max_retries", 3, "scheduler", errors, minimum=0)
    rd = _duration(t, "retry_delay", "scheduler", errors) or timedelta(seconds=5)
    return SchedulerConfig(store=store, max_workers=mw, timezone=tz, max_retries=mr,
                           retry_delay=rd)


def _web(t: Mapping[str, Any], errors: list[str]) -> WebConfig:
    _unknown("web", t, _WEB_KEYS, errors)
    host = t.get("host", DEFAULT_HOST)
    if not isinstance(host, str) or not host.strip():
        errors.append(f"web: host: expected a host name or address, got {_show(host)}")
        host = DEFAULT_HOST
    port = _int(t, "port", DEFAULT_PORT, "web", errors, minimum=0)
    if port > 65535:
        errors.append(f"web: port: must be 0-65535, got {port}")
        port = DEFAULT_PORT
    tenv = t.get("token_env", DEFAULT_TOKEN_ENV)
    if not isinstance(tenv, str) or not tenv.strip():
        errors.append(f"web: token_env: expected an environment variable name, got {_show(tenv)}")
        tenv = DEFAULT_TOKEN_ENV
    return WebConfig(host=host, port=port, token_env=tenv)


def _tasks(raw: Any, base: Path, sched: SchedulerConfig, errors: list[str],
           check_imports: bool) -> list[TaskConfig]:
    if not isinstance(raw, list):
        errors.append(f"task: expected [[task]] tables, got {_show(raw)}")
        return []
    out: list[TaskConfig] = []
    seen: dict[str, int] = {}
    for i, t in enumerate(raw, 1):
        if not isinstance(t, Mapping):
            errors.append(f"task #{i}: expected a table, got {_show(t)}")
            continue
        tid = t.get("id")
        if not isinstance(tid, str) or not TASK_ID_RE.fullmatch(tid):
            what = "required" if tid is None else (
                f"{_show(tid)} may only contain A-Z a-z 0-9 . _ : - (1-200 characters)")
            errors.append(f"task #{i}: id: {what}")
            where = f"task #{i}"
        else:
            where = f"task {tid!r}"
            if tid in seen:
                errors.append(f"{where}: id: duplicate (also task #{seen[tid]})")
            seen.setdefault(tid, i)
        tc = _task(t, where, base, sched, errors, check_imports)
        if tc is not None:
            out.append(tc)
    ids = {tc.id for tc in out} | set(seen)
    for tc in out:
        for dep in tc.task.dependencies:
            if dep not in ids:
                errors.append(f"task {tc.id!r}: depends_on: unknown task {dep!r}")
            elif dep == tc.id:
                errors.append(f"task {tc.id!r}: depends_on: a task cannot depend on itself")
    cycle = _find_cycle({tc.id: tc.task.dependencies for tc in out})
    if cycle:
        errors.append(f"task {cycle[0]!r}: depends_on: dependency cycle "
                      + " -> ".join(map(repr, cycle)))
    return out


def _task(t: Mapping[str, Any], where: str, base: Path, sched: SchedulerConfig,
          errors: list[str], check_imports: bool) -> TaskConfig | None:
    n0 = len(errors)
    _unknown(where, t, _TASK_KEYS, errors)

    def err(key: str, msg: str) -> None:
        errors.append(f"{where}: {key}: {msg}")

    name = _str(t, "name", "", where, errors)
    description = _str(t, "description", "", where, errors)
    schedule = _schedule(t, where, errors)
    command, handler = _what(t, where, base, errors, check_imports)
    priority = _int(t, "priority", 50, where, errors)
    deps = t.get("depends_on", [])
    if isinstance(deps, str):
        deps = [deps]
    if not isinstance(deps, list) or not all(isinstance(d, str) and d for d in deps):
        err("depends_on", f"expected a list of task ids, got {_show(deps)}")
        deps = []
    retry: RetryPolicy | None = None
    if any(k in t for k in ("retries", "retry_delay", "retry_backoff")):
        retries = _int(t, "retries", sched.max_retries, where, errors, minimum=0)
        delay = _duration(t, "retry_delay", where, errors, allow_zero=True) or sched.retry_delay
        backoff = t.get("retry_backoff", 2.0)
        if isinstance(backoff, bool) or not isinstance(backoff, int | float) or backoff < 1:
            err("retry_backoff", f"must be a number >= 1, got {_show(backoff)}")
            backoff = 2.0
        retry = RetryPolicy(max_retries=retries, delay=delay, backoff=float(backoff))
    timeout = _duration(t, "timeout", where, errors)
    misfire = _duration(t, "misfire_grace", where, errors, allow_zero=True)
    max_inst = _int(t, "max_instances", 1, where, errors, minimum=1)
    enabled = t.get("enabled", True)
    if not isinstance(enabled, bool):
        err("enabled", f"expected true or false, got {_show(enabled)}")
        enabled = True
    md = t.get("metadata", {})
    if not isinstance(md, Mapping) or not all(isinstance(v, str) for v in md.values()):
        err("metadata", f"expected a table of strings, got {_show(md)}")
        md = {}
    bad_md = sorted(k for k in md if k.startswith("tickwork."))
    if bad_md:
        err("metadata", f"keys starting with 'tickwork.' are reserved: {', '.join(bad_md)}")
    tid = t.get("id")
    if (len(errors) > n0 or schedule is None or (command is None and handler is None)
            or not isinstance(tid, str) or not TASK_ID_RE.fullmatch(tid)):
        return None
    metadata = dict(md)
    metadata[SOURCE_KEY] = SOURCE_CONFIG
    metadata[HASH_KEY] = _digest(t, base)
    if command is not None:
        metadata[COMMAND_KEY] = command.display()
        command = CommandSpec(task_id=tid, argv=command.argv, shell=command.shell,
                              cwd=command.cwd, env=command.env, kill_grace=command.kill_grace)
        handler = command_handler_name(tid)
    task = Task(id=tid, name=name, description=description, handler=handler,
                schedule=schedule, enabled=enabled, priority=priority, dependencies=list(deps),
                retry=retry, timeout=timeout, max_instances=max_inst, misfire_grace=misfire,
                metadata=metadata)
    return TaskConfig(task=task, command=command)


def _schedule(t: Mapping[str, Any], where: str, errors: list[str]) -> Schedule | None:
    given = [k for k in ("cron", "interval", "at") if k in t]
    if len(given) != 1:
        errors.append(f"{where}: schedule: give exactly one of cron, interval or at"
                      + (f" (got {', '.join(given)})" if given else ""))
        return None
    kind = given[0]
    value = t[kind]
    jitter = _duration(t, "jitter", where, errors, allow_zero=True)
    tz = t.get("timezone")
    if tz is not None:
        if kind != "cron":
            errors.append(f"{where}: timezone: only applies to cron schedules "
                          "(naive 'at' times use [scheduler] timezone)")
        tz = _zone(tz, f"{where}: timezone", errors)
    try:
        if kind == "cron":
            if not isinstance(value, str):
                raise ValueError(f"cron: expected a cron expression string, got {_show(value)}")
            return cron(value, timezone=tz, jitter=jitter)
        if kind == "interval":
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise ValueError(f"interval: expected a duration like '5m', got {_show(value)}")
            return every(to_timedelta(value, field="interval"), jitter=jitter)
        return at(_times(value), jitter=jitter)
    except ValueError as e:
        msg = str(e)
        for prefix in ("schedule.interval", "schedule.times", "schedule.cron", "schedule.jitter"):
            msg = msg.replace(prefix, prefix.split(".")[1])
        if not msg.startswith(kind) and not msg.startswith(("jitter", "times")):
            msg = f"{kind}: {msg}"
        errors.append(f"{where}: {msg}")
        return None


def _times(value: Any) -> list[datetime]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("at: expected one or more date-times, got an empty list")
    out = []
    for v in items:
        if isinstance(v, datetime):
            out.append(v)
        elif isinstance(v, str):
            try:
                out.append(datetime.fromisoformat(v.replace("Z", "+00:00")))
            except ValueError:
                raise ValueError(f"at: bad date-time {v!r} (use e.g. "
                                 "'2026-12-01T00:00:00Z' or a TOML date-time)") from None
        elif isinstance(v, date | time):
            raise ValueError(f"at: {v.isoformat()!r} needs both a date and a time")
        else:
            raise ValueError(f"at: expected a date-time, got {_show(v)}")
    return out


def _what(t: Mapping[str, Any], where: str, base: Path, errors: list[str],
          check_imports: bool) -> tuple[CommandSpec | None, str | None]:
    has_cmd, has_handler = "command" in t, "handler" in t
    cmd_only = [k for k in ("shell", "cwd", "env", "kill_grace") if k in t]
    if has_cmd == has_handler:
        errors.append(f"{where}: command: give exactly one of command or handler"
                      + (" (got both)" if has_cmd else ""))
        return None, None
    if has_handler:
        for k in cmd_only:
            errors.append(f"{where}: {k}: only applies to command tasks")
        h = t["handler"]
        if not isinstance(h, str) or h.count(":") != 1 or not all(h.split(":")):
            errors.append(f"{where}: handler: expected 'package.module:function', got {_show(h)}")
            return None, None
        if check_imports:
            try:
                import_handler(h)
            except Exception as e:  # any import-time failure is a config error to report
                errors.append(f"{where}: handler: cannot import {h!r}: "
                              f"{type(e).__name__}: {e}")
                return None, None
        return None, h
    n0 = len(errors)
    shell = t.get("shell", False)
    if not isinstance(shell, bool):
        errors.append(f"{where}: shell: expected true or false, got {_show(shell)}")
        shell = False
    cmd = t["command"]
    argv: tuple[str, ...] | str = ()
    if isinstance(cmd, str):
        if not shell:
            errors.append(f"{where}: command: a string runs through a shell only with "
                          "shell = true; otherwise give a list like [\"prog\", \"arg\"]")
        elif not cmd.strip():
            errors.append(f"{where}: command: empty command")
        argv = cmd
    elif isinstance(cmd, list) and cmd and all(isinstance(a, str) for a in cmd):
        if shell:
            errors.append(f"{where}: shell: shell = true needs command as one string")
        elif not cmd[0]:
            errors.append(f"{where}: command: the program (first item) is empty")
        argv = tuple(cmd)
    else:
        errors.append(f"{where}: command: expected a non-empty list of strings "
                      f"(or a string with shell = true), got {_show(cmd)}")
    cwd = t.get("cwd")
    if cwd is not None:
        if not isinstance(cwd, str) or not cwd:
            errors.append(f"{where}: cwd: expected a directory path, got {_show(cwd)}")
            cwd = None
        else:
            cwd = str((base / Path(cwd).expanduser()).resolve())
            if not Path(cwd).is_dir():
                errors.append(f"{where}: cwd: not a directory: {cwd!r}")
    env = t.get("env", {})
    if not isinstance(env, Mapping) or not all(isinstance(v, str) for v in env.values()):
        errors.append(f"{where}: env: expected a table of strings, got {_show(env)}")
        env = {}
    grace = _duration(t, "kill_grace", where, errors, allow_zero=True)
    if len(errors) > n0:
        return None, None
    return CommandSpec(task_id="", argv=argv, shell=shell, cwd=cwd, env=dict(env),
                       kill_grace=DEFAULT_KILL_GRACE if grace is None
                       else grace.total_seconds()), None


# ----- scalars ----------------------------------------------------------------------------
def _show(v: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(v))
    return f"{v!r}" if kind is None or len(repr(v)) < 60 else kind


def _str(t: Mapping[str, Any], key: str, default: str, where: str, errors: list[str]) -> str:
    v = t.get(key, default)
    if not isinstance(v, str):
        errors.append(f"{where}: {key}: expected a string, got {_show(v)}")
        return default
    return v


def _int(t: Mapping[str, Any], key: str, default: int, where: str, errors: list[str],
         *, minimum: int | None = None) -> int:
    v = t.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        errors.append(f"{where}: {key}: expected an integer, got {_show(v)}")
        return default
    if minimum is not None and v < minimum:
        errors.append(f"{where}: {key}: must be >= {minimum}, got {v}")
        return default
    return v


def _duration(t: Mapping[str, Any], key: str, where: str, errors: list[str], *,
              allow_zero: bool = False) -> timedelta | None:
    if key not in t:
        return None
    v = t[key]
    try:
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise ValueError(f"{key}: expected a duration like '30s' or seconds, got {_show(v)}")
        td = to_timedelta(v, field=key)
    except ValueError as e:
        errors.append(f"{where}: {e}")
        return None
    if td < timedelta(0) or (td == timedelta(0) and not allow_zero):
        errors.append(f"{where}: {key}: must be {'>= 0' if allow_zero else '> 0'}, got {v!r}")
        return None
    return td


def _zone(v: Any, where: str, errors: list[str]) -> str | None:
    from .._tz import zone

    try:
        zone(v if isinstance(v, str) else repr(v))
    except ValueError:
        errors.append(f"{where}: unknown time zone {_show(v)}")
        return None
    return str(v)


def _digest(t: Mapping[str, Any], base: Path) -> str:
    def conv(o: Any) -> Any:
        return o.isoformat() if isinstance(o, date | time) else str(o)

    doc = json.dumps({"task": t, "base": str(base)}, sort_keys=True, default=conv)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def _find_cycle(graph: Mapping[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for d in graph.get(n, ()):
            if d == n or d not in graph:
                continue  # reported separately
            if state.get(d) == 1:
                return [*path[path.index(d):], d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        path.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


__all__ = [
    "COMMAND_KEY", "HASH_KEY", "SOURCE_CONFIG", "SOURCE_KEY",
    "ConfigError", "SchedulerConfig", "ServiceConfig", "TaskConfig", "WebConfig",
    "is_loopback", "load_config", "parse_config",
]
