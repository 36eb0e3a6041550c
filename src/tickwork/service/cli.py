"""Service subcommands of ``tickwork``: run, demo, validate, tasks ..., history.

``run``/``demo``/``validate`` work on config files; ``tasks`` and ``history`` are clients of
a running service (REST over HTTP with the standard library's urllib, so the client needs
no extra install): ``--url`` (default http://127.0.0.1:8787, or ``TICKWORK_URL``) and
``--token`` (or ``TICKWORK_TOKEN``). Output is a human-readable table, or ``--json``.
Exit codes: 0 ok, 1 error (bad config, API error, service unreachable), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode
from urllib.request import Request, urlopen

DEFAULT_URL = "http://127.0.0.1:8787"
DEMO_CONFIG = Path(__file__).with_name("demo.toml")
_DEMO_START = re.compile(r'"DEMO_START\+(\d+)s"')


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run the service for a config file (scheduler + web UI)")
    run.add_argument("config", help="path to the TOML config")
    run.add_argument("--host", default=None, help="override [web] host")
    run.add_argument("--port", type=int, default=None, help="override [web] port")

    demo = sub.choices.get("demo")
    if demo is None:  # the lead's parser normally defines it; stay usable without it
        demo = sub.add_parser("demo", help="run the bundled example service")
        demo.add_argument("--seconds", type=float, default=None)
    demo.add_argument("--dir", default=None,
                      help="keep the demo's SQLite database here (default: a temp dir)")
    demo.add_argument("--port", type=int, default=8787, help="port on 127.0.0.1 (default 8787)")

    val = sub.add_parser("validate", help="check a config file and list every problem")
    val.add_argument("config", help="path to the TOML config")
    val.add_argument("--no-imports", action="store_true",
                     help="do not import handler modules (check syntax only)")
    val.add_argument("--json", action="store_true", help="machine-readable output")

    tasks = sub.add_parser("tasks", help="list and control the tasks of a running service")
    tsub = tasks.add_subparsers(dest="tasks_command", metavar="ACTION", required=True)
    p = tsub.add_parser("list", help="all tasks")
    _client_args(p)
    for name, text in (("show", "one task and its recent runs"),
                       ("enable", "enable a task"), ("disable", "disable a task"),
                       ("run", "run a task now (once, besides its schedule)"),
                       ("remove", "delete a task and its schedule")):
        p = tsub.add_parser(name, help=text)
        p.add_argument("id", help="task id")
        _client_args(p)

    hist = sub.add_parser("history", help="recent runs (of every task, or of one)")
    hist.add_argument("id", nargs="?", default=None, help="task id (default: all tasks)")
    hist.add_argument("-n", "--limit", type=int, default=20, help="how many runs (default 20)")
    _client_args(hist)


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("TICKWORK_URL", DEFAULT_URL),
                   help=f"service URL (default {DEFAULT_URL} or $TICKWORK_URL)")
    p.add_argument("--token", default=None, help="API token (default $TICKWORK_TOKEN)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    cmd = args.command
    try:
        if cmd == "validate":
            return _validate(args)
        if cmd == "run":
            return _run(args)
        if cmd == "demo":
            return _demo(args)
        if cmd in ("tasks", "history"):
            return _client_command(args)
    except KeyboardInterrupt:
        return 130
    print(f"tickwork: unknown command {cmd!r}", file=sys.stderr)
    return 2


# ----- config commands ----------------------------------------------------------------------
def _validate(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config

    _add_config_dir_to_path(args.config)
    try:
        cfg = load_config(args.config, check_imports=not args.no_imports)
    except ConfigError as e:
        if args.json:
            print(json.dumps({"ok": False, "errors": e.errors}, indent=2))
        else:
            n = len(e.errors)
            print(f"{args.config}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
            for msg in e.errors:
                print(f"  {msg}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"ok": True, "tasks": [tc.id for tc in cfg.tasks],
                          "store": cfg.scheduler.store}, indent=2))
    else:
        print(f"{args.config}: OK, {len(cfg.tasks)} task{'s' if len(cfg.tasks) != 1 else ''}"
              f" ({', '.join(tc.id for tc in cfg.tasks)})" if cfg.tasks else
              f"{args.config}: OK, no tasks")
    return 0


def _add_config_dir_to_path(config: str) -> None:
    # Handlers named "module:function" next to the config import without installing them.
    d = str(Path(config).resolve().parent)
    if d not in sys.path:
        sys.path.insert(0, d)


def _run(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config

    _add_config_dir_to_path(args.config)
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"tickwork: refusing to start, {args.config} has errors:", file=sys.stderr)
        for msg in e.errors:
            print(f"  {msg}", file=sys.stderr)
        return 1
    return _serve(cfg, host=args.host, port=args.port)


def _serve(cfg: Any, *, host: str | None, port: int | None,
           stop_after: float | None = None) -> int:
    import logging

    from .._errors import StoreError
    from .runtime import ServiceError, serve

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    try:
        return serve(cfg, host=host, port=port, stop_after=stop_after)
    except (ServiceError, StoreError) as e:
        print(f"tickwork: {e}", file=sys.stderr)
        return 1


def load_demo_config(directory: Path, now: datetime | None = None) -> Any:
    """The bundled demo config with its store in ``directory`` and start-relative times."""
    from .config import ConfigError, parse_config
    from .runtime import with_store

    start = now or datetime.now().astimezone()
    text = _DEMO_START.sub(
        lambda m: '"' + (start + timedelta(seconds=int(m.group(1)))).isoformat(
            timespec="seconds") + '"',
        DEMO_CONFIG.read_text(encoding="utf-8"))
    import tomllib

    try:
        cfg = parse_config(tomllib.loads(text), path=directory / "demo.toml")
    except ConfigError as e:  # pragma: no cover - the bundled file is tested
        raise SystemExit(f"tickwork: the bundled demo config is broken:\n{e}") from None
    return with_store(cfg, f"sqlite:///{directory / 'tickwork-demo.db'}")


def _demo(args: argparse.Namespace) -> int:
    port = getattr(args, "port", 8787)
    seconds = getattr(args, "seconds", None)
    if getattr(args, "dir", None):
        directory = Path(args.dir).expanduser().resolve()
        directory.mkdir(parents=True, exist_ok=True)
        return _serve(load_demo_config(directory), host="127.0.0.1", port=port,
                      stop_after=seconds)
    with tempfile.TemporaryDirectory(prefix="tickwork-demo-") as tmp:
        print(f"tickwork demo: state in {tmp} (deleted on exit; --dir keeps it)", flush=True)
        return _serve(load_demo_config(Path(tmp)), host="127.0.0.1", port=port,
                      stop_after=seconds)


# ----- HTTP client --------------------------------------------------------------------------
class ApiError(Exception):
    pass


class Client:
    """A minimal JSON client for the service's REST API."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, query: dict[str, Any] | None = None) -> Any:
        full = self.url + path + (("?" + urlencode(query)) if query else "")
        req = Request(full, method=method, headers={"Accept": "application/json"})
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urlopen(req, timeout=self.timeout) as resp:
                body = resp.read()
        except HTTPError as e:
            raise ApiError(_http_error(e)) from None
        except URLError as e:
            raise ApiError(f"cannot reach the tickwork service at {self.url}: {e.reason} "
                           "(is `tickwork run` running? see --url)") from None
        except (TimeoutError, OSError) as e:
            raise ApiError(f"no answer from {self.url}: {e}") from None
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError:
            raise ApiError(f"{method} {full}: the answer is not JSON") from None


def _http_error(e: HTTPError) -> str:
    try:
        err = json.loads(e.read()).get("error", {})
        code, msg = err.get("code", e.code), err.get("message", e.reason)
    except (ValueError, AttributeError, OSError):
        code, msg = e.code, e.reason
    hint = " (use --token or TICKWORK_TOKEN)" if e.code in (401, 403) else ""
    return f"{code}: {msg}{hint} [HTTP {e.code}]"


def _client_command(args: argparse.Namespace) -> int:
    client = Client(args.url, args.token or os.environ.get("TICKWORK_TOKEN"))
    try:
        if args.command == "history":
            return _history(client, args)
        return _tasks(client, args)
    except ApiError as e:
        print(f"tickwork: {e}", file=sys.stderr)
        return 1


def _items(data: Any, *keys: str) -> list[dict[str, Any]]:
    if isinstance(data, dict):
        for k in keys:
            if isinstance(data.get(k), list):
                return list(data[k])
    return list(data) if isinstance(data, list) else []


def _tasks(client: Client, args: argparse.Namespace) -> int:
    action = args.tasks_command
    if action == "list":
        data = client.request("GET", "/api/tasks")
        tasks = _items(data, "tasks", "items")
        if args.json:
            print(json.dumps(tasks, indent=2))
        else:
            print(table(["ID", "STATE", "SCHEDULE", "NEXT RUN", "LAST", "RUNS", "ERRORS"],
                        [[t.get("id"), t.get("state"), schedule_text(t.get("schedule")),
                          when(t.get("next_run")), t.get("last_status") or "-",
                          t.get("run_count", 0), t.get("error_count", 0)] for t in tasks]))
        return 0
    path = f"/api/tasks/{quote(args.id, safe='')}"
    if action == "show":
        task = client.request("GET", path)
        runs = _items(client.request("GET", path + "/history", {"limit": 10}), "runs", "items")
        if args.json:
            print(json.dumps({"task": task, "runs": runs}, indent=2))
        else:
            print(show_task(task if isinstance(task, dict) else {}))
            if runs:
                print()
                print(runs_table(runs))
        return 0
    method, suffix, done = {"enable": ("POST", "/enable", "enabled"),
                            "disable": ("POST", "/disable", "disabled"),
                            "run": ("POST", "/run", "queued to run now"),
                            "remove": ("DELETE", "", "removed")}[action]
    data = client.request(method, path + suffix)
    if args.json:
        print(json.dumps(data if data is not None else {"ok": True}, indent=2))
    else:
        print(f"task {args.id!r} {done}")
    return 0


def _history(client: Client, args: argparse.Namespace) -> int:
    if args.id:
        data = client.request("GET", f"/api/tasks/{quote(args.id, safe='')}/history",
                              {"limit": args.limit})
    else:
        data = client.request("GET", "/api/runs", {"limit": args.limit})
    runs = _items(data, "runs", "items")
    if args.json:
        print(json.dumps(runs, indent=2))
    else:
        print(runs_table(runs))
    return 0


# ----- formatting -----------------------------------------------------------------------------
def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in cells]
    if not rows:
        lines.append("(none)")
    return "\n".join(lines)


def schedule_text(s: Any) -> str:
    if isinstance(s, str):
        return s
    if isinstance(s, dict):
        for k in ("description", "describe", "text"):
            if isinstance(s.get(k), str):
                return str(s[k])
        kind = s.get("type")
        if kind == "cron":
            return f"cron {s.get('cron')}"
        if kind == "interval":
            return f"every {s.get('interval')}s"
        if kind == "once":
            return "at " + ", ".join(map(str, s.get("times") or []))
    return "-" if s is None else str(s)


def when(v: Any) -> str:
    if not isinstance(v, str):
        return "-"
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return v
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _duration(r: dict[str, Any]) -> str:
    d = r.get("duration")
    if isinstance(d, int | float):
        return f"{d:.2f}s"
    try:
        a = datetime.fromisoformat(str(r["started_at"]).replace("Z", "+00:00"))
        b = datetime.fromisoformat(str(r["finished_at"]).replace("Z", "+00:00"))
    except (KeyError, ValueError, TypeError):
        return "-"
    return f"{(b - a).total_seconds():.2f}s"


def _first_line(s: Any, n: int = 60) -> str:
    if not s:
        return ""
    line = str(s).strip().splitlines()[0] if str(s).strip() else ""
    return line if len(line) <= n else line[: n - 1] + "…"


def runs_table(runs: list[dict[str, Any]]) -> str:
    return table(["STARTED", "TASK", "STATUS", "DURATION", "ATTEMPTS", "RUN", "ERROR"],
                 [[when(r.get("started_at") or r.get("scheduled_for")), r.get("task_id"),
                   r.get("status"), _duration(r), r.get("attempts"),
                   str(r.get("run_id", ""))[:12], _first_line(r.get("error"))] for r in runs])


def show_task(t: dict[str, Any]) -> str:
    keys = ["id", "name", "description", "state", "enabled", "schedule", "handler",
            "next_run", "last_run", "last_status", "last_error", "run_count", "error_count",
            "priority", "dependencies", "retry", "timeout", "max_instances", "misfire_grace",
            "metadata"]
    lines = []
    for k in keys + sorted(set(t) - set(keys)):
        if k not in t:
            continue
        v = t[k]
        if k == "schedule":
            v = schedule_text(v)
        elif k in ("next_run", "last_run"):
            v = when(v)
        elif isinstance(v, dict | list):
            v = json.dumps(v)
        lines.append(f"{k + ':':15} {'-' if v is None or v == '' else v}")
    return "\n".join(lines)
