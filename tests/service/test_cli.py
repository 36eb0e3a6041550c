"""The CLI as a user runs it: `validate` exit codes and messages, and the HTTP client
commands (`tasks ...`, `history`) against a real `tickwork demo` subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tickwork.service.runtime import load_app_factory

REPO = Path(__file__).resolve().parents[2]


def tw(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tickwork", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=60, env=env)


# ----- validate -------------------------------------------------------------------------------
def test_validate_ok(tmp_path: Path) -> None:
    p = tmp_path / "ok.toml"
    p.write_text('[[task]]\nid = "a"\ncommand = ["true"]\ninterval = "5m"\n'
                 '[[task]]\nid = "b"\nhandler = "tickwork.service.demo_jobs:report"\n'
                 'cron = "0 * * * *"\n')
    r = tw("validate", str(p))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{p}: OK, 2 tasks (a, b)"


def test_validate_reports_every_error_and_exits_1(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('[[task]]\nid = "cleanup"\ncommand = ["x"]\ncron = "61 * * * *"\n'
                 '[[task]]\nid = "other"\ncommand = "echo"\ninterval = "5q"\n')
    r = tw("validate", str(p))
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines[0] == f"{p}: 3 errors"
    assert "  task 'cleanup': cron: bad minute '61' in '61 * * * *' (allowed 0-59)" in lines
    assert any(x.startswith("  task 'other': interval: bad duration '5q'") for x in lines)
    assert any(x.startswith("  task 'other': command: a string runs") for x in lines)


def test_validate_json(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('[[task]]\nid = "t"\ncommand = ["x"]\ninterval = "5m"\nretires = 1\n')
    r = tw("validate", "--json", str(p))
    assert r.returncode == 1
    assert json.loads(r.stdout) == {"ok": False, "errors": [
        "task 't': unknown key 'retires' (did you mean 'retries'?)"]}


def test_validate_missing_file_and_syntax_error(tmp_path: Path) -> None:
    r = tw("validate", str(tmp_path / "nope.toml"))
    assert r.returncode == 1 and "cannot read the config" in r.stderr
    p = tmp_path / "syntax.toml"
    p.write_text("[[task]\n")
    r = tw("validate", str(p))
    assert r.returncode == 1 and "TOML syntax error" in r.stderr


def test_validate_imports_handlers_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "myjobs.py").write_text("def job():\n    return 1\n")
    p = tmp_path / "c.toml"
    p.write_text('[[task]]\nid = "j"\nhandler = "myjobs:job"\ninterval = "1m"\n'
                 '[[task]]\nid = "k"\nhandler = "myjobs:nope"\ninterval = "1m"\n')
    r = tw("validate", str(p))
    assert r.returncode == 1
    assert "task 'k': handler: cannot import 'myjobs:nope': AttributeError" in r.stderr
    assert "task 'j'" not in r.stderr
    assert tw("validate", "--no-imports", str(p)).returncode == 0


def test_run_refuses_a_bad_config_with_the_same_messages(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('[[task]]\nid = "cleanup"\ncommand = ["x"]\ncron = "61 * * * *"\n')
    r = tw("run", str(p))
    assert r.returncode == 1
    assert "refusing to start" in r.stderr
    assert "  task 'cleanup': cron: bad minute '61' in '61 * * * *' (allowed 0-59)" in r.stderr
    assert not (tmp_path / "bad.db").exists()


def test_run_refuses_a_public_host_without_token(tmp_path: Path) -> None:
    p = tmp_path / "pub.toml"
    p.write_text('[web]\nhost = "0.0.0.0"\ntoken_env = "TW_TEST_TOKEN"\n')
    env = {k: v for k, v in os.environ.items() if k != "TW_TEST_TOKEN"}
    r = tw("run", str(p), env=env)
    assert r.returncode == 1
    assert "not a loopback address" in r.stderr and "TW_TEST_TOKEN" in r.stderr


def test_client_reports_an_unreachable_service() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = tw("tasks", "list", "--url", f"http://127.0.0.1:{port}")
    assert r.returncode == 1
    assert "cannot reach the tickwork service" in r.stderr


# ----- client against a running demo --------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if load_app_factory()[0] is None:
        pytest.skip(f"web API not available: {load_app_factory()[1]}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("TICKWORK_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickwork", "demo", "--port", str(port),
         "--dir", str(tmp_path_factory.mktemp("demo"))],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "demo did not start"
            time.sleep(0.05)
    yield base
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)


def wait_for(fn: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not fn():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_tasks_list_table_and_json(demo: str) -> None:
    r = tw("tasks", "list", "--url", demo)
    assert r.returncode == 0, r.stderr
    header = r.stdout.splitlines()[0].split()
    assert header[:3] == ["ID", "STATE", "SCHEDULE"]
    assert any(line.startswith("heartbeat ") for line in r.stdout.splitlines())
    r = tw("tasks", "list", "--url", demo, "--json")
    ids = {t["id"] for t in json.loads(r.stdout)}
    assert {"heartbeat", "prepare", "process", "report", "slow", "flaky"} <= ids


def test_tasks_show_disable_enable_run_remove(demo: str) -> None:
    r = tw("tasks", "show", "process", "--url", demo)
    assert r.returncode == 0, r.stderr
    assert "id:" in r.stdout and "process" in r.stdout and "prepare" in r.stdout

    assert tw("tasks", "disable", "heartbeat", "--url", demo).stdout.strip() == \
        "task 'heartbeat' disabled"
    shown = json.loads(tw("tasks", "show", "heartbeat", "--url", demo, "--json").stdout)
    assert shown["task"]["enabled"] is False
    assert tw("tasks", "enable", "heartbeat", "--url", demo).returncode == 0
    shown = json.loads(tw("tasks", "show", "heartbeat", "--url", demo, "--json").stdout)
    assert shown["task"]["enabled"] is True

    # "run" queues one execution of a task whose schedule is far away (the cron task).
    before = len(json.loads(tw("history", "every-minute", "--url", demo, "--json").stdout))
    assert tw("tasks", "run", "every-minute", "--url", demo).returncode == 0
    wait_for(lambda: len(json.loads(
        tw("history", "every-minute", "--url", demo, "--json").stdout)) > before)
    runs = json.loads(tw("history", "every-minute", "--url", demo, "--json").stdout)
    assert runs[0]["status"] == "succeeded"
    assert runs[0]["result"]["exit_code"] == 0

    r = tw("tasks", "remove", "report", "--url", demo)
    assert r.returncode == 0, r.stderr
    r = tw("tasks", "show", "report", "--url", demo)
    assert r.returncode == 1 and "report" in r.stderr and "404" in r.stderr


def test_remove_refused_while_others_depend(demo: str) -> None:
    r = tw("tasks", "remove", "prepare", "--url", demo)
    assert r.returncode == 1
    assert "depend" in r.stderr


def test_history_all_and_failed_command_error(demo: str) -> None:
    wait_for(lambda: any(x["task_id"] == "always-fails" for x in json.loads(
        tw("history", "--url", demo, "--json", "-n", "100").stdout)))
    r = tw("history", "--url", demo, "-n", "100")
    assert r.returncode == 0
    assert r.stdout.splitlines()[0].split()[:3] == ["STARTED", "TASK", "STATUS"]
    runs = json.loads(tw("history", "always-fails", "--url", demo, "--json").stdout)
    assert runs[0]["status"] == "failed"
    assert "exit code 3" in runs[0]["error"] and "about to fail" in runs[0]["error"]
