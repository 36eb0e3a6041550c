"""``JsonTaskStore``: tasks and recent history in one JSON file, written atomically.

File format (v1), one task or run per line so diffs stay readable::

    {"v":1,"tasks":[
    {...task dict...},
    ...
    ],"runs":[
    {...run record dict, oldest recorded first...}
    ]}

Unknown top-level keys are kept. The seed's Go format (a JSON array of tasks) is read
too (``tickwork._goformat``); the next write rewrites the file in v1 format, after
copying the original once to ``PATH.seed-backup`` (the Go program cannot read v1).

Writes: every change rewrites the whole file: temp file in the same folder, write,
flush, fsync, ``os.replace``, fsync of the folder. A crash leaves either the old or
the new file, never a mix. If any step fails (full disk, read-only folder) the temp file
is removed, ``StoreError`` is raised, and the old file is intact.

Several processes: a write is a read-modify-write under ``fcntl.flock`` on
``PATH.lock``, so two processes never interleave. Each process keeps the parsed file in
memory and re-reads it only when it changed: under the lock it compares the file's
(inode, size, mtime) *and* a random token every writer puts in the lock file before
renaming. The token is what makes this safe: a tight loop of writes can reuse an inode
with the same size within one mtime tick, which a stat check alone would miss.

A file that cannot be parsed raises ``StoreError`` naming the file and the problem, for
every call (reads and writes) until the file is fixed: it is never overwritten. A
missing file is an empty store.

Cost: a write is O(file size); encoded lines are cached so only changed entries are
re-encoded. Retention defaults to 100 runs per task to keep the file small; the SQLite
store is the choice for long histories or thousands of busy tasks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from .._errors import StoreError
from .._goformat import go_tasks_to_v1
from .._model import RunRecord
from .._serde import FORMAT_VERSION, dump_json, record_to_dict
from ._runlog import RunLog
from .base import TaskDict
from .memory import copy_task

_Stamp = tuple[int, int, int, int] | None  # (dev, ino, size, mtime_ns) or None: no file


class _Snapshot:
    """The parsed file: tasks (id -> its UTF-8 JSON line), runs, unknown keys."""

    def __init__(self, log: RunLog) -> None:
        self.tasks: dict[str, bytes] = {}
        self.runs = log
        self.extra: dict[str, Any] = {}
        self.from_go = False


class JsonTaskStore:
    """A durable store in one JSON file. See the module docstring for guarantees."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        keep_runs_per_task: int | None = 100,
        keep_days: float | None = None,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.lock_path = self.path + ".lock"
        self.keep_runs_per_task = keep_runs_per_task
        self.keep_days = keep_days
        RunLog(keep_runs_per_task, keep_days)  # validates the retention settings now
        self._mutex = threading.Lock()
        self._lock_fd: int | None = None
        self._closed = False
        self._snap: _Snapshot | None = None
        self._seen: tuple[_Stamp, bytes] | None = None  # what _snap was read from
        self._error: tuple[tuple[_Stamp, bytes], StoreError] | None = None
        self._tmp_prefix = "." + os.path.basename(self.path) + ".tmp-"
        self._swept = False  # stale temp files removed yet?

    # ---------------------------------------------------------------------- locking

    def _lock_file(self, *, create: bool) -> int | None:
        if self._lock_fd is None:
            try:
                flags = os.O_RDWR | (os.O_CREAT if create else 0)
                self._lock_fd = os.open(self.lock_path, flags | os.O_CLOEXEC, 0o644)
            except OSError as e:
                if not create:
                    return None  # readers manage without: renames are atomic anyway
                raise StoreError(
                    f"JSON store {self.path}: cannot create lock file {self.lock_path}: "
                    f"{e.strerror}"
                ) from None
        return self._lock_fd

    @contextlib.contextmanager
    def _locked(self, *, write: bool) -> Iterator[_Snapshot]:
        """The current file contents, under the thread lock and the file lock."""
        with self._mutex:
            if self._closed:
                raise StoreError(f"JSON store {self.path}: store is closed")
            fd = self._lock_file(create=write)
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            try:
                yield self._current(fd)
            finally:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def _token(self, fd: int | None) -> bytes:
        if fd is None:
            return b""
        try:
            return os.pread(fd, 32, 0)
        except OSError:
            return b""

    def _stamp(self) -> _Stamp:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(f"JSON store {self.path}: cannot stat: {e.strerror}") from None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    # ---------------------------------------------------------------------- reading

    def _current(self, fd: int | None) -> _Snapshot:
        seen = (self._stamp(), self._token(fd))
        if self._snap is not None and self._seen == seen:
            return self._snap
        if self._error is not None and self._error[0] == seen:
            raise self._error[1]
        self._snap = None
        try:
            snap = self._read(seen[0])
        except StoreError as e:
            self._error = (seen, e)
            raise
        self._error = None
        self._snap, self._seen = snap, seen
        return snap

    def _read(self, stamp: _Stamp) -> _Snapshot:
        snap = _Snapshot(RunLog(self.keep_runs_per_task, self.keep_days))
        if stamp is None:
            return snap
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return snap
        except OSError as e:
            raise StoreError(f"JSON store {self.path}: cannot read: {e.strerror}") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise StoreError(f"JSON store {self.path}: not valid JSON: {e}") from None
        try:
            if isinstance(data, list) or data is None:
                snap.from_go = True
                for t in go_tasks_to_v1(data):
                    snap.tasks[t["id"]] = dump_json(t).encode("utf-8")
                return snap
            self._parse_v1(data, snap)
        except StoreError as e:
            raise StoreError(f"JSON store {self.path}: {e}") from None
        return snap

    def _parse_v1(self, data: Any, snap: _Snapshot) -> None:
        if not isinstance(data, dict):
            raise StoreError(f"expected an object or a Go task array, got {type(data).__name__}")
        v = data.get("v")
        if v != FORMAT_VERSION:
            raise StoreError(f"unsupported format version {v!r} (this tickwork reads "
                             f"{FORMAT_VERSION}; was it written by a newer version?)")
        tasks, runs = data.get("tasks", []), data.get("runs", [])
        if not isinstance(tasks, list) or not isinstance(runs, list):
            raise StoreError("'tasks' and 'runs' must be lists")
        for t in tasks:
            tid, text = copy_task(t)
            if tid in snap.tasks:
                raise StoreError(f"task {tid!r} appears twice")
            snap.tasks[tid] = text.encode("utf-8")
        for r in runs:
            snap.runs.load(r)
        snap.extra = {k: v for k, v in data.items() if k not in ("v", "tasks", "runs")}

    # ---------------------------------------------------------------------- writing

    def _encode(self, snap: _Snapshot) -> Iterator[bytes]:
        """The file as chunks: cached lines are written as they are, never joined into
        one big string first (at 10,000 tasks that copy was most of a write's cost)."""
        yield b'{"v":%d,"tasks":[' % FORMAT_VERSION
        sep = b"\n"
        for line in snap.tasks.values():
            yield sep
            yield line
            sep = b",\n"
        yield b"\n],\"runs\":[" if snap.tasks else b'],"runs":['
        sep = b"\n"
        for e in snap.runs.entries():
            yield sep
            yield e.json()
            sep = b",\n"
        yield b"\n]" if len(snap.runs) else b"]"
        for k, v in snap.extra.items():
            yield b"," + dump_json(k).encode("utf-8") + b":" + dump_json(v).encode("utf-8")
        yield b"}\n"

    def _write(self, snap: _Snapshot, fd: int | None) -> None:
        """Replace the file with ``snap``; on failure forget the cache (disk is intact)."""
        try:
            if snap.from_go and not os.path.exists(self.path + ".seed-backup"):
                shutil.copy2(self.path, self.path + ".seed-backup")
            self._replace(self._encode(snap), fd)
        except BaseException as e:
            self._snap = self._seen = None
            if isinstance(e, OSError):
                raise StoreError(
                    f"JSON store {self.path}: write failed, file left as it was: "
                    f"{e.strerror or e}"
                ) from None
            raise
        snap.from_go = False
        self._seen = (self._stamp(), self._token(fd))

    def _replace(self, data: Iterable[bytes], fd: int | None) -> None:
        folder = os.path.dirname(self.path)
        if not self._swept:
            self._remove_stale_temps(folder)
        tmp_fd, tmp = tempfile.mkstemp(dir=folder, prefix=self._tmp_prefix)
        try:
            with contextlib.suppress(OSError):  # keep the mode a user gave the file
                os.fchmod(tmp_fd, os.stat(self.path).st_mode & 0o7777)
            with os.fdopen(tmp_fd, "wb", buffering=1 << 20) as f:
                f.writelines(data)
                f.flush()
                os.fsync(f.fileno())
            if fd is not None:  # announce the change before it becomes visible
                os.pwrite(fd, os.urandom(16).hex().encode(), 0)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _remove_stale_temps(self, folder: str) -> None:
        """Temp files left by a writer killed mid-write. Writers only create them under
        the exclusive lock, which we hold, so any that exist now are abandoned."""
        n = len(self._tmp_prefix)
        with contextlib.suppress(OSError):
            for name in os.listdir(folder):
                if name.startswith(self._tmp_prefix) and len(name) == n + 8:
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(folder, name))
        self._swept = True

    # ---------------------------------------------------------------------- protocol

    def load_tasks(self) -> list[TaskDict]:
        with self._locked(write=False) as snap:
            lines = list(snap.tasks.values())
        return [json.loads(t) for t in lines]

    def upsert_task(self, task: TaskDict, now: datetime) -> None:
        tid, text = copy_task(task)
        with self._locked(write=True) as snap:
            snap.tasks[tid] = text.encode("utf-8")
            self._write(snap, self._lock_fd)

    def delete_task(self, task_id: str, now: datetime) -> None:
        with self._locked(write=True) as snap:
            if task_id not in snap.tasks and not snap.from_go:
                return
            snap.tasks.pop(task_id, None)
            self._write(snap, self._lock_fd)

    def replace_tasks(self, tasks: Sequence[TaskDict], now: datetime) -> None:
        new = {tid: text.encode("utf-8") for tid, text in map(copy_task, tasks)}
        with self._locked(write=True) as snap:
            snap.tasks = new
            self._write(snap, self._lock_fd)

    def record_run(self, task: TaskDict | None, record: RunRecord, now: datetime) -> None:
        copied = None if task is None else copy_task(task)
        data: dict[str, Any] = json.loads(dump_json(record_to_dict(record)))
        with self._locked(write=True) as snap:
            if copied is not None:
                snap.tasks[copied[0]] = copied[1].encode("utf-8")
            snap.runs.put(data, record)
            snap.runs.sweep(now)
            self._write(snap, self._lock_fd)

    def record_runs(self, items: Sequence[tuple[TaskDict | None, RunRecord]],
                    now: datetime) -> None:
        """``record_run`` for each item, in order, in one file replacement."""
        prepared = [(None if t is None else copy_task(t),
                     json.loads(dump_json(record_to_dict(r))), r) for t, r in items]
        with self._locked(write=True) as snap:
            for copied, data, record in prepared:
                if copied is not None:
                    snap.tasks[copied[0]] = copied[1].encode("utf-8")
                snap.runs.put(data, record)
            snap.runs.sweep(now)
            self._write(snap, self._lock_fd)

    def get_history(self, task_id: str | None = None, limit: int = 100) -> list[RunRecord]:
        with self._locked(write=False) as snap:
            return snap.runs.history(task_id, limit)

    def close(self) -> None:
        with self._mutex:
            self._closed = True
            self._snap = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __repr__(self) -> str:
        return f"JsonTaskStore({self.path!r})"
