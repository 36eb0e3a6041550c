"""Command tasks against real subprocesses: exit codes, output, process-group kills, env/cwd."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tickwork import RunStatus, Scheduler, Task, TaskContext, every
from tickwork._clock import SYSTEM_CLOCK
from tickwork.service.commands import (
    OUTPUT_LIMIT,
    CommandError,
    CommandRunner,
    CommandSpec,
    command_handler_name,
    process_stat,
)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups are POSIX")
PY = sys.executable


def ctx(task_id: str = "t") -> TaskContext:
    now = datetime.now(UTC)
    return TaskContext(task_id=task_id, run_id="r1", attempt=1, scheduled_for=now,
                       started_at=now, deadline=None, clock=SYSTEM_CLOCK,
                       logger=logging.getLogger("test"))


def spec(argv: tuple[str, ...] | str, **kw: object) -> CommandSpec:
    return CommandSpec(task_id="t", argv=argv, **kw)  # type: ignore[arg-type]


def alive(pid: int) -> bool:
    st = process_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_success_keeps_exit_code_and_combined_output() -> None:
    r = CommandRunner(spec((PY, "-c", "import sys; print('out'); sys.stdout.flush(); "
                                      "print('err', file=sys.stderr)")))
    res = r(ctx())
    assert res["exit_code"] == 0
    assert res["output"] == "out\nerr\n"
    assert res["truncated"] is False


def test_non_zero_exit_is_a_failure_naming_code_and_output() -> None:
    r = CommandRunner(spec((PY, "-c", "import sys; print('went wrong'); sys.exit(7)")))
    with pytest.raises(CommandError) as ei:
        r(ctx())
    assert ei.value.exit_code == 7
    assert "exit code 7" in str(ei.value)
    assert "went wrong" in str(ei.value)


def test_missing_program_is_a_clear_failure() -> None:
    with pytest.raises(CommandError, match=r"cannot start.*no-such-program-xyz"):
        CommandRunner(spec(("no-such-program-xyz",)))(ctx())


def test_output_is_cut_to_the_last_64_kib() -> None:
    # 200 KiB of numbered lines; the tail must be exactly the last 64 KiB.
    code = ("import sys\nfor i in range(20000): sys.stdout.write(f'{i:09d}\\n')\n")
    res = CommandRunner(spec((PY, "-c", code)))(ctx())
    full = "".join(f"{i:09d}\n" for i in range(20000))
    assert res["truncated"] is True
    assert len(res["output"].encode()) == OUTPUT_LIMIT
    assert res["output"] == full[-OUTPUT_LIMIT:]


def test_failure_error_carries_the_tail_only() -> None:
    code = "import sys\nsys.stdout.write('A' * 100000 + 'END')\nsys.exit(1)"
    with pytest.raises(CommandError) as ei:
        CommandRunner(spec((PY, "-c", code)))(ctx())
    msg = str(ei.value)
    assert msg.endswith("END")
    assert len(ei.value.output.encode()) == OUTPUT_LIMIT
    assert "last 65536 bytes" in msg


def test_env_and_cwd(tmp_path: Path) -> None:
    code = "import os; print(os.getcwd()); print(os.environ['GREETING'], os.environ['PATH'] != '')"
    res = CommandRunner(spec((PY, "-c", code), cwd=str(tmp_path),
                             env={"GREETING": "hello"}))(ctx("my-task"))
    lines = res["output"].splitlines()
    assert os.path.realpath(lines[0]) == os.path.realpath(tmp_path)
    assert lines[1] == "hello True"  # the service's environment is inherited, then extended


def test_task_id_is_in_the_environment() -> None:
    res = CommandRunner(spec("echo $TICKWORK_TASK_ID $TICKWORK_ATTEMPT", shell=True))(ctx("x1"))
    assert res["output"] == "x1 1\n"


def test_shell_true_runs_a_shell_string() -> None:
    res = CommandRunner(spec("echo a | tr a b; echo c >&2", shell=True))(ctx())
    assert res["output"] == "b\nc\n"


def test_list_command_does_not_go_through_a_shell() -> None:
    res = CommandRunner(spec(("echo", "$HOME", "a;b")))(ctx())
    assert res["output"] == "$HOME a;b\n"


def _group_script(pids: Path, trap: bool = False) -> str:
    ignore = "trap '' TERM; " if trap else ""
    return f"{ignore}sleep 1000 & echo $$ $! > {pids}.tmp; mv {pids}.tmp {pids}; wait"


@pytest.mark.parametrize("trap", [False, True], ids=["sigterm", "sigkill-after-grace"])
def test_cancel_kills_the_whole_process_group(tmp_path: Path, trap: bool) -> None:
    pids_file = tmp_path / "pids"
    c = ctx()
    runner = CommandRunner(spec(_group_script(pids_file, trap), shell=True, kill_grace=0.5))
    errors: list[BaseException] = []

    def target() -> None:
        try:
            runner(c)
        except BaseException as e:
            errors.append(e)

    th = threading.Thread(target=target)
    th.start()
    wait_for(pids_file.exists)
    shell_pid, child_pid = map(int, pids_file.read_text().split())
    assert alive(shell_pid) and alive(child_pid)
    t0 = time.monotonic()
    c.cancel()
    th.join(10)
    assert not th.is_alive()
    assert time.monotonic() - t0 < 5
    assert not alive(shell_pid)
    assert not alive(child_pid)
    assert errors and isinstance(errors[0], CommandError)
    assert "killed" in str(errors[0])


def test_background_child_does_not_keep_the_run_open(tmp_path: Path) -> None:
    # The program exits at once but leaves a child holding the output pipe.
    pid_file = tmp_path / "bg"
    t0 = time.monotonic()
    res = CommandRunner(spec(f"sleep 30 & echo $! > {pid_file}; echo done", shell=True))(ctx())
    assert time.monotonic() - t0 < 5
    assert res["exit_code"] == 0 and "done" in res["output"]
    os.kill(int(pid_file.read_text()), 9)


def test_timeout_in_the_scheduler_kills_the_group_and_records_timed_out(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    sched = Scheduler(max_workers=2)
    tid = "slow"
    sched.register_handler(command_handler_name(tid), CommandRunner(
        spec(_group_script(pids_file), shell=True, kill_grace=0.5)))
    sched.add_task(Task(id=tid, handler=command_handler_name(tid), schedule=every(hours=1),
                        timeout=0.5, retry=None))
    sched.set_max_retries(0)
    with sched:
        wait_for(pids_file.exists)
        shell_pid, child_pid = map(int, pids_file.read_text().split())
        wait_for(lambda: any(r.status is RunStatus.TIMED_OUT for r in sched.get_history(tid)))
        wait_for(lambda: not alive(shell_pid) and not alive(child_pid), timeout=5)
    rec = sched.get_history(tid)[0]
    assert rec.error is not None and rec.error.startswith("TimeoutError")


def test_scheduler_keeps_exit_code_and_output_in_the_run_record() -> None:
    sched = Scheduler(max_workers=2)
    sched.register_handler("command:ok", CommandRunner(spec(("echo", "hi"))))
    sched.register_handler("command:bad", CommandRunner(spec("echo oops; exit 4", shell=True)))
    sched.set_max_retries(0)
    sched.add_task(Task(id="ok", handler="command:ok", schedule=every(hours=1)))
    sched.add_task(Task(id="bad", handler="command:bad", schedule=every(hours=1)))
    with sched:
        wait_for(lambda: len(sched.get_history()) >= 2)
    ok = sched.get_history("ok")[0]
    assert ok.status is RunStatus.SUCCEEDED
    assert ok.result == {"exit_code": 0, "output": "hi\n", "truncated": False}
    bad = sched.get_history("bad")[0]
    assert bad.status is RunStatus.FAILED
    assert bad.error is not None and "exit code 4" in bad.error and "oops" in bad.error
