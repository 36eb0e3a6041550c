"""Command tasks: run a program as a task, the way cron would, but visible and killable.

Design:

* The program runs without a shell unless the config says ``shell = true`` (then the
  string goes to ``/bin/sh -c``), in a new session (``start_new_session=True``) so that it
  and everything it spawns share one process group that can be killed as a whole.
* stdout and stderr are merged into one pipe (their interleaving is what a user reading a
  log expects); only the last ``OUTPUT_LIMIT`` bytes are kept, so a chatty job cannot grow
  the scheduler's memory or the history.
* Waiting: one thread reaps the process, another drains the pipe; the handler's thread
  waits on "exited" and checks ``ctx.cancelled`` (set by the scheduler at the timeout
  deadline, on disable and on stop) every ``POLL`` seconds. On cancel it sends SIGTERM to
  the group, waits ``kill_grace`` for every member to go, then SIGKILLs the group.
* When the program exits by itself, background children it left behind are not killed
  (cron does not either); the output pipe is read for a short moment more and then
  abandoned, so such a child cannot keep the run open forever.

A zero exit is success and the run's result is ``{"exit_code": 0, "output": tail,
"truncated": bool}``; a non-zero exit raises ``CommandError`` whose message carries the
exit code and the output tail, which the scheduler keeps as the run's error.

Stored tasks name their handler ``"command:<task id>"``; the runtime registers one
``CommandRunner`` per command task under that name with ``sched.register_handler``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._context import TaskContext

OUTPUT_LIMIT = 64 * 1024
DEFAULT_KILL_GRACE = 5.0
POLL = 0.05
DRAIN_AFTER_EXIT = 0.5  # how long to keep reading output left open by background children
HANDLER_PREFIX = "command:"


def command_handler_name(task_id: str) -> str:
    return HANDLER_PREFIX + task_id


class CommandError(RuntimeError):
    """A command exited with a non-zero status (or could not be started)."""

    def __init__(self, message: str, *, exit_code: int | None = None, output: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.output = output


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandSpec:
    """What to run: ``argv`` (a tuple) or a shell string with ``shell=True``."""

    task_id: str
    argv: tuple[str, ...] | str
    shell: bool = False
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    kill_grace: float = DEFAULT_KILL_GRACE

    def display(self) -> str:
        if isinstance(self.argv, str):
            return self.argv
        import shlex

        return shlex.join(self.argv)


class _Tail:
    """The last ``limit`` bytes written, and how many were written in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.buf += chunk
        if len(self.buf) > self.limit:
            del self.buf[: len(self.buf) - self.limit]

    def text(self) -> str:
        s = bytes(self.buf).decode("utf-8", errors="replace")
        # A cut in the middle of a multi-byte character leaves a replacement mark first.
        return s[1:] if self.total > self.limit and s.startswith("\ufffd") else s

    @property
    def truncated(self) -> bool:
        return self.total > self.limit


class CommandRunner:
    """The handler for one command task: ``runner(ctx)`` runs the command once."""

    def __init__(self, spec: CommandSpec, *, output_limit: int = OUTPUT_LIMIT) -> None:
        self.spec = spec
        self.output_limit = output_limit

    def __repr__(self) -> str:
        return f"CommandRunner({self.spec.display()!r})"

    def __call__(self, ctx: TaskContext) -> dict[str, Any]:
        spec = self.spec
        env = dict(os.environ)
        env.update(spec.env)
        env["TICKWORK_TASK_ID"] = ctx.task_id
        env["TICKWORK_RUN_ID"] = ctx.run_id
        env["TICKWORK_ATTEMPT"] = str(ctx.attempt)
        try:
            proc = subprocess.Popen(
                spec.argv, shell=spec.shell, cwd=spec.cwd, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )
        except OSError as e:
            raise CommandError(f"cannot start {spec.display()!r}: {e.strerror or e}") from None
        assert proc.stdout is not None
        tail = _Tail(self.output_limit)
        stop_reading = threading.Event()
        reader = threading.Thread(target=_drain, args=(proc.stdout.fileno(), tail, stop_reading),
                                  name=f"tickwork-cmd-out-{proc.pid}", daemon=True)
        exited = threading.Event()

        def reap() -> None:
            proc.wait()
            exited.set()

        reaper = threading.Thread(target=reap,
                                  name=f"tickwork-cmd-wait-{proc.pid}", daemon=True)
        reader.start()
        reaper.start()
        killed = False
        try:
            while not exited.wait(POLL):
                if ctx.cancelled:
                    killed = True
                    kill_group(proc, spec.kill_grace)
                    break
        finally:
            if not exited.is_set():  # an unexpected error in this thread: never leak the group
                kill_group(proc, spec.kill_grace)
            reader.join(DRAIN_AFTER_EXIT)
            stop_reading.set()
            reader.join()
            proc.stdout.close()
        code = proc.returncode
        output = tail.text()
        if killed:
            ctx.logger.warning("command %s killed (cancelled); exit status %s; output tail:\n%s",
                               spec.display(), code, output[-2000:])
            raise CommandError(f"killed after cancellation (exit status {code})",
                               exit_code=code, output=output)
        if code != 0:
            what = f"signal {-code}" if code < 0 else f"exit code {code}"
            cut = f"last {self.output_limit} bytes of " if tail.truncated else ""
            msg = f"{what} from {spec.display()!r}"
            msg += f"; {cut}output:\n{output}" if output else " (no output)"
            raise CommandError(msg, exit_code=code, output=output)
        return {"exit_code": code, "output": output, "truncated": tail.truncated}


def _drain(fd: int, tail: _Tail, stop: threading.Event) -> None:
    while True:
        try:
            ready, _, _ = select.select([fd], [], [], POLL)
        except (OSError, ValueError):
            return
        if not ready:
            if stop.is_set():
                return
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        tail.add(chunk)


def kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group of ``proc``; SIGKILL it if anything is left after ``grace``."""
    pgid = proc.pid  # the leader of its own session: pgid == pid
    if os.name != "posix":  # pragma: no cover - no process groups to speak of
        proc.kill()
        proc.wait()
        return
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            break
        time.sleep(POLL / 2)
    else:
        _signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=max(grace, 1.0))
    # Make sure nothing of the group survives, even a member that ignored SIGTERM while
    # the leader exited in time.
    if group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in group ``pgid``.

    On Linux /proc is read so that zombies waiting for a reaper (a container's PID 1 may
    never reap) do not count; elsewhere ``killpg(pgid, 0)`` answers.
    """
    proc_dir = "/proc"
    if os.path.isdir(proc_dir + "/self"):
        for name in os.listdir(proc_dir):
            if not name.isdigit():
                continue
            st = process_stat(int(name))
            if st is not None and st[1] == pgid and st[0] not in ("Z", "X"):
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, process group) of ``pid`` from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces or ')'.
    rest = data[data.rfind(")") + 2:].split()
    try:
        return rest[0], int(rest[2])
    except (IndexError, ValueError):
        return None


__all__ = [
    "DEFAULT_KILL_GRACE", "HANDLER_PREFIX", "OUTPUT_LIMIT",
    "CommandError", "CommandRunner", "CommandSpec", "command_handler_name",
    "group_alive", "kill_group", "process_stat",
]
