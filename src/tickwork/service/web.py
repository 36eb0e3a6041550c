"""The web UI: server-rendered HTML pages, readable without JavaScript.

No template engine (one fewer dependency): pages are built from small functions, and
every value from a task, a run or a request passes through ``e()`` (``html.escape`` with
quotes), so a task named ``<script>`` renders as text. Actions are POST forms that work
without JavaScript (303 back to the page); ``static/app.js`` enhances them (fetch, no
reload) and re-renders the live sections when ``/api/events`` reports a change.

The timeline is an inline SVG: one row per task, a bar per run over the last 24 hours,
coloured by status, each bar with a ``<title>`` for hover and screen readers.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from .. import RunRecord, RunStatus, Scheduler, SchedulerError, Task, TaskNotFoundError
from .auth import COOKIE_NAME, safe_next, session_value, token_ok

STATIC_DIR = Path(__file__).with_name("static")
TIMELINE_HOURS = 24
MAX_FORM_BYTES = 10_000

# Colours chosen for >= 4.5:1 contrast of white text / against the white page.
STATUS_COLOURS = {
    RunStatus.SUCCEEDED: "#1a7f37",
    RunStatus.FAILED: "#cf222e",
    RunStatus.TIMED_OUT: "#9a3f00",
    RunStatus.RUNNING: "#0b5cad",
    RunStatus.SKIPPED: "#59636e",
    RunStatus.MISSED: "#6e40c9",
    RunStatus.CANCELLED: "#3d444d",
}


def e(value: object) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def _tz(sched: Scheduler) -> tzinfo:
    try:
        return sched.timezone
    except Exception:  # a scheduler without a zone still renders, in UTC
        return UTC


def fmt_time(dt: datetime | None, tz: tzinfo) -> str:
    if dt is None:
        return "—"
    return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def time_tag(dt: datetime | None, tz: tzinfo) -> str:
    if dt is None:
        return "<span>—</span>"
    return f'<time datetime="{e(dt.isoformat())}">{e(fmt_time(dt, tz))}</time>'


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def status_badge(status: RunStatus | str | None) -> str:
    if status is None:
        return '<span class="badge badge-none">never run</span>'
    s = str(status)
    return f'<span class="badge badge-{e(s)}">{e(s.replace("_", " "))}</span>'


def describe(task: Task) -> str:
    try:
        return task.schedule.describe()
    except Exception:  # describe() is best effort; never break the page over it
        return str(task.schedule.cron or task.schedule.type)


def page(title: str, body: str, *, live: bool = True) -> str:
    script = '<script src="/static/app.js" defer></script>' if live else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · tickwork</title>
<link rel="stylesheet" href="/static/style.css">
{script}
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <a class="brand" href="/">tickwork</a>
  <span id="conn" class="conn" data-state="off">live updates off</span>
</header>
<main id="main">
{body}
</main>
<div id="live" class="sr-status" role="status" aria-live="polite"></div>
</body>
</html>"""


# ----- pieces ----------------------------------------------------------------------------
def action_forms(task: Task, back: str) -> str:
    tid = e(task.id)
    url = "/ui/tasks/" + e(quote(task.id, safe=""))
    toggle = "disable" if task.enabled else "enable"
    label = "Disable" if task.enabled else "Enable"
    return (
        f'<form method="post" action="{url}/{toggle}" data-enhance class="inline">'
        f'<input type="hidden" name="next" value="{e(back)}">'
        f'<button type="submit" id="toggle-{tid}" data-action="{toggle}" '
        f'aria-label="{label} {tid}">{label}</button></form>'
        f'<form method="post" action="{url}/run" data-enhance class="inline">'
        f'<input type="hidden" name="next" value="{e(back)}">'
        f'<button type="submit" id="run-{tid}" data-action="run" '
        f'aria-label="Run {tid} now">Run now</button></form>'
    )


def task_table(tasks: list[Task], tz: tzinfo, last: dict[str, RunRecord]) -> str:
    if not tasks:
        return '<section id="tasks" data-live><h2>Tasks</h2><p>No tasks yet.</p></section>'
    rows = []
    for t in tasks:
        rec = last.get(t.id)
        dur = rec.duration.total_seconds() if rec is not None and rec.duration else None
        last_cell = status_badge(t.last_status)
        if dur is not None:
            last_cell += f' <span class="dur">{e(fmt_duration(dur))}</span>'
        if t.last_error:
            last_cell += f'<div class="err" title="{e(t.last_error)}">{e(t.last_error[:120])}</div>'
        link = "/tasks/" + quote(t.id, safe="")
        rows.append(
            f'<tr id="task-{e(t.id)}" data-task="{e(t.id)}" data-state="{e(t.state)}">'
            f'<th scope="row"><a href="{e(link)}">{e(t.id)}</a>'
            f'<div class="name">{e(t.name)}</div></th>'
            f'<td><span class="state state-{e(t.state)}">{e(t.state)}</span></td>'
            f"<td>{e(describe(t))}</td>"
            f"<td>{time_tag(t.next_run, tz)}</td>"
            f'<td class="last">{last_cell}</td>'
            f'<td class="num">{t.run_count}</td>'
            f'<td class="actions">{action_forms(t, "/")}</td></tr>'
        )
    return (
        '<section id="tasks" data-live aria-labelledby="tasks-h"><h2 id="tasks-h">Tasks</h2>'
        '<table class="grid"><caption class="sr-only">Tasks, their schedule and last run'
        "</caption><thead><tr>"
        '<th scope="col">Task</th><th scope="col">State</th><th scope="col">Schedule</th>'
        '<th scope="col">Next run</th><th scope="col">Last run</th>'
        '<th scope="col">Runs</th><th scope="col">Actions</th>'
        "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></section>"
    )


def runs_table(records: Iterable[RunRecord], tz: tzinfo, *, section_id: str, title: str,
               show_task: bool) -> str:
    rows = []
    for r in records:
        dur = r.duration.total_seconds() if r.duration is not None else None
        result = "" if r.result is None else str(r.result)
        if isinstance(r.result, dict) and "output" in r.result:
            result = str(r.result.get("output") or "")
        out = f"<pre>{e(result[:4000])}</pre>" if result else ""
        err = f'<pre class="err">{e(r.error[:4000])}</pre>' if r.error else ""
        task_cell = ""
        if show_task:
            link = "/tasks/" + quote(r.task_id, safe="")
            task_cell = f'<td><a href="{e(link)}">{e(r.task_id)}</a></td>'
        manual = ' <span class="tag">manual</span>' if r.manual else ""
        rows.append(
            f'<tr data-run="{e(r.run_id)}" data-status="{e(r.status)}">'
            f"<td>{time_tag(r.started_at or r.scheduled_for, tz)}{manual}</td>{task_cell}"
            f"<td>{status_badge(r.status)}</td>"
            f'<td class="num">{r.attempts}</td>'
            f'<td class="num">{e(fmt_duration(dur))}</td>'
            f"<td>{err}{out}</td></tr>"
        )
    head_task = '<th scope="col">Task</th>' if show_task else ""
    body = ("".join(rows) if rows else
            f'<tr><td colspan="{6 if show_task else 5}">No runs yet.</td></tr>')
    return (
        f'<section id="{e(section_id)}" data-live aria-labelledby="{e(section_id)}-h">'
        f'<h2 id="{e(section_id)}-h">{e(title)}</h2><table class="grid"><thead><tr>'
        f'<th scope="col">Started</th>{head_task}<th scope="col">Status</th>'
        '<th scope="col">Attempts</th><th scope="col">Duration</th>'
        '<th scope="col">Error / output</th></tr></thead>'
        f"<tbody>{body}</tbody></table></section>"
    )


def timeline_svg(task_ids: list[str], records: list[RunRecord], now: datetime,
                 tz: tzinfo, *, hours: int = TIMELINE_HOURS) -> str:
    """Bars per task over the last ``hours``; a picture, described for screen readers."""
    start = now - timedelta(hours=hours)
    span = (now - start).total_seconds()
    label_w, chart_w, row_h, top = 170, 780, 22, 24
    ids = list(task_ids)
    for r in records:
        if r.task_id not in ids:
            ids.append(r.task_id)
    height = top + row_h * max(len(ids), 1) + 8
    width = label_w + chart_w + 24  # room for the last tick label

    def x(dt: datetime) -> float:
        return label_w + max(0.0, min(1.0, (dt - start).total_seconds() / span)) * chart_w

    parts: list[str] = []
    for h in range(0, hours + 1, 3):
        tick = start + timedelta(hours=h)
        tx = x(tick)
        parts.append(f'<line x1="{tx:.1f}" y1="{top - 4}" x2="{tx:.1f}" y2="{height - 4}" '
                     'class="grid-line"/>')
        parts.append(f'<text x="{tx:.1f}" y="14" class="tick" text-anchor="middle">'
                     f"{e(tick.astimezone(tz).strftime('%H:%M'))}</text>")
    rows = {tid: i for i, tid in enumerate(ids)}
    for tid, i in rows.items():
        y = top + i * row_h
        short = tid if len(tid) <= 22 else tid[:21] + "…"
        parts.append(f'<text x="4" y="{y + 15}" class="row-label">{e(short)}'
                     f"<title>{e(tid)}</title></text>")
    shown = 0
    for r in records:
        begin = r.started_at or r.scheduled_for
        end = r.finished_at or (now if r.status is RunStatus.RUNNING else begin)
        if end < start or begin > now:
            continue
        shown += 1
        y = top + rows[r.task_id] * row_h + 3
        x0 = x(begin)
        w = max(x(end) - x0, 3.0)
        colour = STATUS_COLOURS.get(r.status, "#59636e")
        dur = r.duration.total_seconds() if r.duration is not None else None
        tip = f"{r.task_id}: {r.status} at {fmt_time(begin, tz)}"
        if dur is not None:
            tip += f" ({fmt_duration(dur)})"
        parts.append(f'<rect x="{x0:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 6}" '
                     f'fill="{colour}" class="bar bar-{e(r.status)}" data-task="{e(r.task_id)}">'
                     f"<title>{e(tip)}</title></rect>")
    legend = "".join(
        f'<li><span class="swatch" style="background:{c}"></span>{e(str(s).replace("_", " "))}'
        "</li>" for s, c in STATUS_COLOURS.items())
    label = (f"Timeline of the last {hours} hours: {shown} runs of {len(ids)} tasks, "
             "one row per task, bars coloured by status")
    return (
        '<section id="timeline" data-live aria-labelledby="timeline-h">'
        f'<h2 id="timeline-h">Last {hours} hours</h2>'
        f'<svg class="timeline" role="img" aria-label="{e(label)}" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{e(label)}</title>{"".join(parts)}</svg>'
        f'<ul class="legend" aria-label="Status colours">{legend}</ul></section>'
    )


def stats_block(stats: dict[str, int]) -> str:
    items = [("Tasks", "total_tasks"), ("Enabled", "enabled_tasks"),
             ("Running", "running_tasks"), ("Runs", "total_runs"),
             ("Errors", "total_errors"), ("Retries", "total_retries"),
             ("Skipped", "total_skipped"), ("Missed", "total_missed")]
    cells = "".join(f'<div><dt>{e(label)}</dt><dd data-stat="{e(key)}">{stats.get(key, 0)}'
                    "</dd></div>" for label, key in items)
    return (f'<section id="stats" data-live aria-label="Totals"><dl class="stats">{cells}'
            "</dl></section>")


# ----- routes ----------------------------------------------------------------------------
def _last_records(sched: Scheduler, records: list[RunRecord]) -> dict[str, RunRecord]:
    last: dict[str, RunRecord] = {}
    for r in records:  # newest first
        last.setdefault(r.task_id, r)
    return last


def render_dashboard(sched: Scheduler) -> str:
    tz = _tz(sched)
    now = datetime.now(UTC)
    tasks = sched.list_tasks()
    history = sched.get_history(limit=10000)
    recent = [r for r in history
              if (r.finished_at or r.started_at or r.scheduled_for)
              >= now - timedelta(hours=TIMELINE_HOURS)]
    body = (
        '<h1>Scheduler</h1>'
        + stats_block(sched.get_stats())
        + task_table(tasks, tz, _last_records(sched, history))
        + timeline_svg([t.id for t in tasks], recent, now, tz)
        + runs_table(history[:25], tz, section_id="runs", title="Recent runs", show_task=True)
    )
    return page("Dashboard", body)


def render_task(sched: Scheduler, task: Task) -> str:
    tz = _tz(sched)
    now = datetime.now(UTC)
    history = sched.get_history(task.id, limit=200)
    recent = [r for r in history
              if (r.finished_at or r.started_at or r.scheduled_for)
              >= now - timedelta(hours=TIMELINE_HOURS)]
    back = "/tasks/" + quote(task.id, safe="")
    deps = ", ".join(task.dependencies) or "none"
    details = [
        ("Name", e(task.name) or "—"), ("Description", e(task.description) or "—"),
        ("State", f'<span class="state state-{e(task.state)}">{e(task.state)}</span>'),
        ("Schedule", e(describe(task))), ("Next run", time_tag(task.next_run, tz)),
        ("Last run", time_tag(task.last_run, tz)), ("Last status", status_badge(task.last_status)),
        ("Runs", e(task.run_count)), ("Errors", e(task.error_count)),
        ("Last error", f'<span class="err">{e(task.last_error)}</span>' if task.last_error
         else "—"),
        ("Priority", e(task.priority)), ("Depends on", e(deps)),
        ("Handler", e(task.handler if isinstance(task.handler, str) else "callable")),
    ]
    dl = "".join(f"<div><dt>{label}</dt><dd>{value}</dd></div>" for label, value in details)
    body = (
        f'<p class="crumbs"><a href="/">All tasks</a></p><h1>Task <code>{e(task.id)}</code></h1>'
        f'<section id="details" data-live aria-label="Details"><dl class="details">{dl}</dl>'
        f'<div class="actions">{action_forms(task, back)}</div></section>'
        + timeline_svg([task.id], recent, now, tz)
        + runs_table(history, tz, section_id="history", title="History", show_task=False)
    )
    return page(f"Task {task.id}", body)


def render_login(next_url: str, error: str | None = None) -> str:
    err = f'<p class="err" role="alert">{e(error)}</p>' if error else ""
    body = (
        '<h1>Log in</h1>' + err +
        '<form method="post" action="/login" class="login">'
        f'<input type="hidden" name="next" value="{e(next_url)}">'
        '<label for="token">Access token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" '
        'required autofocus>'
        '<button type="submit">Log in</button></form>'
    )
    return page("Log in", body, live=False)


async def _form(request: Request) -> dict[str, str]:
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        return {}
    parsed = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items() if v}


def _html(content: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status, headers={
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                   "img-src 'self' data:; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    })


def install(app: FastAPI, sched: Scheduler) -> None:
    """Add the HTML routes and /static to ``app`` (kept out of the OpenAPI document)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def dashboard() -> HTMLResponse:
        return _html(render_dashboard(sched))

    @app.get("/tasks/{task_id}", include_in_schema=False)
    def task_page(task_id: str) -> HTMLResponse:
        try:
            task = sched.get_task(task_id)
        except TaskNotFoundError:
            body = (f'<h1>Not found</h1><p>There is no task <code>{e(task_id)}</code>.</p>'
                    '<p><a href="/">All tasks</a></p>')
            return _html(page("Not found", body, live=False), 404)
        return _html(render_task(sched, task))

    @app.post("/ui/tasks/{task_id}/{action}", include_in_schema=False)
    async def task_action(task_id: str, action: str, request: Request) -> Response:
        form = await _form(request)
        target = safe_next(form.get("next"))
        fn = {"enable": sched.enable_task, "disable": sched.disable_task,
              "run": sched.run_now}.get(action)
        if fn is None:
            return _html(page("Not found", "<h1>Unknown action</h1>", live=False), 404)
        try:
            fn(task_id)
        except TaskNotFoundError:
            return _html(page("Not found", f"<h1>No task <code>{e(task_id)}</code></h1>",
                              live=False), 404)
        except SchedulerError as exc:
            return _html(page("Error", f"<h1>Error</h1><p>{e(exc)}</p>", live=False), 409)
        return RedirectResponse(target, status_code=303)

    @app.get("/login", include_in_schema=False)
    def login_page(next: str = "/") -> Response:
        if app.state.token is None:
            return RedirectResponse(safe_next(next), status_code=303)
        return _html(render_login(safe_next(next)))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        token: str | None = app.state.token
        form = await _form(request)
        target = safe_next(form.get("next"))
        if token is None:
            return RedirectResponse(target, status_code=303)
        if not token_ok(token, form.get("token")):
            return _html(render_login(target, "Wrong token."), 401)
        resp = RedirectResponse(target, status_code=303)
        resp.set_cookie(COOKIE_NAME, session_value(token), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
        return resp

    @app.post("/logout", include_in_schema=False)
    def logout() -> Response:
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
        return resp
