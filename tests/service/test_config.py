"""The service config: every error names its task and key; reconciling config into a store."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tickwork import RetryPolicy, Scheduler, ScheduleType, SqliteTaskStore
from tickwork.service.config import (
    COMMAND_KEY,
    HASH_KEY,
    SOURCE_KEY,
    ConfigError,
    ServiceConfig,
    is_loopback,
    load_config,
    parse_config,
)
from tickwork.service.runtime import REMOVED_KEY, build_scheduler, reconcile


def parse(text: str, tmp_path: Path | None = None) -> ServiceConfig:
    path = (tmp_path / "tickwork.toml") if tmp_path else None
    return parse_config(tomllib.loads(text), path=path)


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        parse(text)
    return ei.value.errors


FULL = """
[scheduler]
store = "memory://"
max_workers = 4
timezone = "Europe/Berlin"
max_retries = 1
retry_delay = "2s"

[web]
host = "0.0.0.0"
port = 9000
token_env = "MY_TOKEN"

[[task]]
id = "prepare"
handler = "tickwork.service.demo_jobs:heartbeat"
interval = "1h30m"

[[task]]
id = "cleanup"
name = "Periodic Cleanup"
description = "removes old files"
command = ["find", "/tmp", "-mtime", "+7"]
cwd = "/"
env = { A = "1" }
cron = "*/15 * * * *"
timezone = "UTC"
priority = 100
depends_on = ["prepare"]
retries = 3
retry_delay = "5s"
retry_backoff = 3
timeout = "10m"
max_instances = 2
misfire_grace = "1m"
enabled = false
jitter = "10s"
kill_grace = "1s"
metadata = { team = "ops" }

[[task]]
id = "release"
command = "echo release | tee /dev/null"
shell = true
at = ["2026-12-01T00:00:00Z", 2026-12-02T10:00:00]
"""


def test_full_config_parses_every_key() -> None:
    cfg = parse(FULL)
    assert cfg.scheduler.store == "memory://"
    assert cfg.scheduler.max_workers == 4 and cfg.scheduler.timezone == "Europe/Berlin"
    assert cfg.scheduler.retry_delay == timedelta(seconds=2)
    assert (cfg.web.host, cfg.web.port, cfg.web.token_env) == ("0.0.0.0", 9000, "MY_TOKEN")
    assert not cfg.web.loopback
    prep, clean, rel = cfg.tasks
    assert prep.task.handler == "tickwork.service.demo_jobs:heartbeat" and prep.command is None
    assert prep.task.schedule.interval == timedelta(hours=1, minutes=30)
    assert prep.task.retry is None  # no retry keys: the scheduler's default policy
    t = clean.task
    assert t.handler == "command:cleanup"
    assert clean.command is not None and clean.command.argv == ("find", "/tmp", "-mtime", "+7")
    assert clean.command.env == {"A": "1"} and clean.command.cwd == "/"
    assert clean.command.kill_grace == 1.0
    assert t.schedule.type is ScheduleType.CRON and t.schedule.timezone == "UTC"
    assert t.schedule.jitter == timedelta(seconds=10)
    assert (t.name, t.description, t.priority, t.dependencies) == (
        "Periodic Cleanup", "removes old files", 100, ["prepare"])
    assert t.retry == RetryPolicy(max_retries=3, delay=timedelta(seconds=5), backoff=3.0)
    assert t.timeout == timedelta(minutes=10) and t.misfire_grace == timedelta(minutes=1)
    assert t.max_instances == 2 and t.enabled is False
    assert t.metadata["team"] == "ops" and t.metadata[SOURCE_KEY] == "config"
    assert t.metadata[COMMAND_KEY] == "find /tmp -mtime +7"
    assert rel.command is not None and rel.command.shell
    assert rel.task.schedule.times == (datetime(2026, 12, 1, tzinfo=UTC),
                                       datetime(2026, 12, 2, 10))


def test_defaults_store_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "jobs.toml").write_text('[[task]]\nid = "a"\ncommand = ["true"]\ninterval = 5\n')
    cfg = load_config(tmp_path / "jobs.toml")
    assert cfg.scheduler.store == f"sqlite:///{tmp_path.resolve() / 'jobs.db'}"
    assert (cfg.web.host, cfg.web.port, cfg.web.token_env) == ("127.0.0.1", 8787,
                                                               "TICKWORK_TOKEN")


@pytest.mark.parametrize(("body", "expected"), [
    ('id = "t"\ncommand = ["x"]\ncron = "61 * * * *"',
     "task 't': cron: bad minute '61' in '61 * * * *' (allowed 0-59)"),
    ('id = "t"\ncommand = ["x"]\ninterval = "5x"', "task 't': interval: bad duration '5x'"),
    ('id = "t"\ncommand = ["x"]\ninterval = "-5s"', "task 't': interval: must be > 0"),
    ('id = "t"\ncommand = ["x"]\nat = "tomorrow"', "task 't': at: bad date-time 'tomorrow'"),
    ('id = "t"\ncommand = ["x"]\nat = []', "task 't': at: expected one or more"),
    ('id = "t"\ncommand = ["x"]', "task 't': schedule: give exactly one of cron, interval or at"),
    ('id = "t"\ncommand = ["x"]\ncron = "* * * * *"\ninterval = "5m"',
     "task 't': schedule: give exactly one of cron, interval or at (got cron, interval)"),
    ('id = "t"\ninterval = "5m"', "task 't': command: give exactly one of command or handler"),
    ('id = "t"\ncommand = ["x"]\nhandler = "a:b"\ninterval = "5m"',
     "task 't': command: give exactly one of command or handler (got both)"),
    ('id = "t"\ncommand = "echo hi"\ninterval = "5m"', "task 't': command: a string runs"),
    ('id = "t"\ncommand = ["echo"]\nshell = true\ninterval = "5m"',
     "task 't': shell: shell = true needs command as one string"),
    ('id = "t"\ncommand = []\ninterval = "5m"', "task 't': command: expected a non-empty list"),
    ('id = "t"\ncommand = [1]\ninterval = "5m"', "task 't': command: expected a non-empty list"),
    ('id = "t"\ncommand = ["x"]\ncwd = "/no/such/dir"\ninterval = "5m"',
     "task 't': cwd: not a directory: '/no/such/dir'"),
    ('id = "t"\ncommand = ["x"]\nenv = { A = 1 }\ninterval = "5m"',
     "task 't': env: expected a table of strings"),
    ('id = "t"\nhandler = "nomodule"\ninterval = "5m"',
     "task 't': handler: expected 'package.module:function', got 'nomodule'"),
    ('id = "t"\nhandler = "no_such_mod_xyz:f"\ninterval = "5m"',
     "task 't': handler: cannot import 'no_such_mod_xyz:f': ModuleNotFoundError"),
    ('id = "t"\nhandler = "a:b"\ncwd = "/"\ninterval = "5m"',
     "task 't': cwd: only applies to command tasks"),
    ('id = "t"\ncommand = ["x"]\ninterval = "5m"\npriority = "high"',
     "task 't': priority: expected an integer, got 'high'"),
    ('id = "t"\ncommand = ["x"]\ninterval = "5m"\nretries = -1', "task 't': retries: must be >= 0"),
    ('id = "t"\ncommand = ["x"]\ninterval = "5m"\nretry_delay = "soon"',
     "task 't': retry_delay: bad duration 'soon'"),
    ('id = "t"\ncommand = ["x"]\ninterval = "5m"\nretry_backoff = 0.5',
     "task 't': retry_backoff: must be a number >= 1"),
    ('id = "t"\ncommand = ["x"]\ninterval = "5m"\ntimeout = 0', "task 't': timeout: must be > 0"),
    ('id = "t"\ncommand = ["x"]\ninterval = "5m"\ntimeout = true',
     "task 't': timeout: expected a duration"),
    ('id = "t"\ncommand = ["x"]\ninterval = "5m"\nmax_instances = 0',
     "task 't': max_instances: must be >= 1"),
    ('id = "t"\ncommand = ["x"]\ninterval = "5m"\nmisfire_grace = "x"',
     "task 't': misfire_grace: bad duration 'x'"),
    ('id = "t"\ncommand = ["x"]\ninterval = "5m"\nenabled = "yes"',
     "task 't': enabled: expected true or false"),
    ('id = "t"\ncommand = ["x"]\ninterval = "5m"\njitter = "-1s"',
     "task 't': jitter: must be >= 0"),
    ('id = "t"\ncommand = ["x"]\ninterval = "5m"\ntimezone = "UTC"',
     "task 't': timezone: only applies to cron schedules"),
    ('id = "t"\ncommand = ["x"]\ncron = "* * * * *"\ntimezone = "Mars/Base"',
     "task 't': timezone: unknown time zone 'Mars/Base'"),
    ('id = "t"\ncommand = ["x"]\ninterval = "5m"\nmetadata = { a = 1 }',
     "task 't': metadata: expected a table of strings"),
    ('id = "t"\ncommand = ["x"]\ninterval = "5m"\nmetadata = { "tickwork.x" = "1" }',
     "task 't': metadata: keys starting with 'tickwork.' are reserved"),
    ('id = "t"\ncommand = ["x"]\ninterval = "5m"\ndepends_on = "nope"',
     "task 't': depends_on: unknown task 'nope'"),
    ('id = "t"\ncommand = ["x"]\ninterval = "5m"\ndepends_on = [1]',
     "task 't': depends_on: expected a list of task ids"),
    ('id = "t"\ncommand = ["x"]\ninterval = "5m"\nretires = 3',
     "task 't': unknown key 'retires' (did you mean 'retries'?)"),
    ('id = "t"\ncommand = ["x"]\ninterval = "5m"\nkill_grace = "x"',
     "task 't': kill_grace: bad duration 'x'"),
    ('command = ["x"]\ninterval = "5m"', "task #1: id: required"),
    ('id = "a b"\ncommand = ["x"]\ninterval = "5m"', "task #1: id: 'a b' may only contain"),
])
def test_each_task_error_names_task_and_key(body: str, expected: str) -> None:
    errs = errors_of("[[task]]\n" + body + "\n")
    assert any(e.startswith(expected) for e in errs), errs


@pytest.mark.parametrize(("text", "expected"), [
    ("[scheduler]\nmax_workers = 0", "scheduler: max_workers: must be >= 1, got 0"),
    ("[scheduler]\ntimezone = 'Nowhere/X'", "scheduler: timezone: unknown time zone 'Nowhere/X'"),
    ("[scheduler]\nstore = 'ftp://x'", "scheduler: store: unknown scheme in 'ftp://x'"),
    ("[scheduler]\nstore = 'tickwork.db'", "scheduler: store: expected a URL"),
    ("[scheduler]\nworkers = 3", "scheduler: unknown key 'workers'"),
    ("[web]\nport = 70000", "web: port: must be 0-65535, got 70000"),
    ("[web]\nport = '80'", "web: port: expected an integer, got '80'"),
    ("[web]\nhots = 'x'", "web: unknown key 'hots' (did you mean 'host'?)"),
    ("[web]\ntoken_env = ''", "web: token_env: expected an environment variable name"),
    ("[webb]\nport = 1", "unknown section or key 'webb'"),
    ("task = 3", "task: expected [[task]] tables"),
])
def test_section_errors_name_section_and_key(text: str, expected: str) -> None:
    errs = errors_of(text)
    assert any(e.startswith(expected) for e in errs), errs


def test_every_error_is_reported_not_just_the_first() -> None:
    errs = errors_of("""
[scheduler]
max_workers = -1
[[task]]
id = "cleanup"
command = ["x"]
cron = "61 * * * *"
retires = 2
[[task]]
id = "cleanup"
handler = "bad"
interval = "5m"
[[task]]
id = "other"
command = ["y"]
interval = "1m"
depends_on = ["ghost"]
""")
    assert len(errs) == 6, errs
    joined = "\n".join(errs)
    for part in ("scheduler: max_workers", "task 'cleanup': cron: bad minute '61'",
                 "task 'cleanup': unknown key 'retires'", "task 'cleanup': id: duplicate",
                 "task 'cleanup': handler: expected", "task 'other': depends_on: unknown"):
        assert part in joined


def test_dependency_cycles_are_reported() -> None:
    errs = errors_of("""
[[task]]
id = "a"
command = ["x"]
interval = "1m"
depends_on = ["b"]
[[task]]
id = "b"
command = ["x"]
interval = "1m"
depends_on = ["a"]
[[task]]
id = "c"
command = ["x"]
interval = "1m"
depends_on = ["c"]
""")
    joined = "\n".join(errs)
    assert "task 'a': depends_on: dependency cycle 'a' -> 'b' -> 'a'" in joined
    assert "task 'c': depends_on: a task cannot depend on itself" in joined


def test_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[[task]]\nid = = 'x'\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert ei.value.errors[0].startswith(f"{p}: TOML syntax error:")
    assert "line 2" in ei.value.errors[0]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config"):
        load_config(tmp_path / "nope.toml")


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


# ----- reconcile ---------------------------------------------------------------------------
def _config(tmp_path: Path, tasks: str) -> ServiceConfig:
    text = f'[scheduler]\nstore = "sqlite:///{tmp_path / "tw.db"}"\n' + tasks
    return parse(text, tmp_path)


A = '[[task]]\nid = "a"\ncommand = ["true"]\ninterval = "1h"\n'
B = '[[task]]\nid = "b"\ncommand = ["true"]\ninterval = "1h"\ndepends_on = ["a"]\n'


def _restart(cfg: ServiceConfig) -> tuple[Scheduler, list[str], list[str], list[str],
                                           list[str]]:
    sched, rep = build_scheduler(cfg)
    return sched, rep.added, rep.updated, rep.unchanged, rep.disabled


def test_reconcile_adds_then_leaves_unchanged(tmp_path: Path) -> None:
    cfg = _config(tmp_path, A + B)
    s1, added, updated, unchanged, disabled = _restart(cfg)
    assert (added, updated, unchanged, disabled) == (["a", "b"], [], [], [])
    assert s1.get_task("b").dependencies == ["a"]
    s1.disable_task("a")  # a runtime change through the API survives an unchanged config
    s1.stop()
    s2, added, updated, unchanged, disabled = _restart(cfg)
    assert (added, updated, unchanged) == ([], [], ["a", "b"])
    assert s2.get_task("a").enabled is False
    s2.stop()


def test_reconcile_updates_changed_tasks_keeping_history(tmp_path: Path) -> None:
    s1, *_ = _restart(_config(tmp_path, A))
    s1.run_now("a")
    with s1:
        _wait(lambda: len(s1.get_history("a")) >= 1)
    changed = A.replace('interval = "1h"', 'interval = "2h"\npriority = 7')
    s2, _added, updated, _unchanged, _ = _restart(_config(tmp_path, changed))
    assert updated == ["a"]
    t = s2.get_task("a")
    assert t.priority == 7 and t.schedule.interval == timedelta(hours=2)
    assert t.run_count >= 1 and len(s2.get_history("a")) >= 1
    s2.stop()


def test_reconcile_disables_tasks_removed_from_config_and_keeps_them(tmp_path: Path) -> None:
    s1, *_ = _restart(_config(tmp_path, A + B))
    s1.run_now("a")
    with s1:
        _wait(lambda: len(s1.get_history("a")) >= 1)
    # "b" is gone from the file, and "a" with it, but another task stays.
    C = '[[task]]\nid = "c"\ncommand = ["true"]\ninterval = "1h"\n'
    s2, added, updated, unchanged, disabled = _restart(_config(tmp_path, C))
    assert added == ["c"] and sorted(disabled) == ["a", "b"]
    a = s2.get_task("a")
    assert a.enabled is False and a.metadata[REMOVED_KEY] == "true"
    assert HASH_KEY not in a.metadata
    assert len(s2.get_history("a")) >= 1  # history kept
    s2.stop()
    # Back in the file: enabled again, no longer marked removed.
    s3, added, updated, unchanged, disabled = _restart(_config(tmp_path, A + C))
    assert updated == ["a"] and unchanged == ["c"] and disabled == []
    a = s3.get_task("a")
    assert a.enabled is True and REMOVED_KEY not in a.metadata
    s3.stop()


def test_reconcile_leaves_api_added_tasks_alone(tmp_path: Path) -> None:
    from tickwork import Task, every

    store = SqliteTaskStore(str(tmp_path / "tw.db"))
    s0 = Scheduler(store=store)
    s0.add_task(Task(id="manual", handler="tickwork.service.demo_jobs:heartbeat",
                     schedule=every(hours=1)))
    s0.stop()
    s1, added, _updated, _unchanged, disabled = _restart(_config(tmp_path, A))
    assert added == ["a"] and disabled == []
    assert s1.get_task("manual").enabled is True
    s1.stop()


def test_reconcile_new_dependency_defined_later_in_file(tmp_path: Path) -> None:
    # Order in the file does not matter: dependencies are added first.
    sched = Scheduler()
    rep = reconcile(sched, _config(tmp_path, B + A))
    assert rep.added == ["a", "b"]


def _wait(cond: object, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
