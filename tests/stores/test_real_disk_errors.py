"""Full disk and read-only file system, for real: a small tmpfs mounted for the test.

The other store tests inject these errors; here the kernel produces them (ENOSPC, EROFS).
Needs root to mount (CI and the dev machines run as root); skips loudly otherwise.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tickwork._errors import StoreError
from tickwork.stores import JsonTaskStore, SqliteTaskStore
from tickwork.stores.base import TaskStore
from tickwork.testing.store_suite import NOW, sample_task


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


Opener = Callable[[Path], TaskStore]
STORES: dict[str, tuple[str, Opener]] = {
    "json": ("tasks.json", lambda p: JsonTaskStore(p)),
    "sqlite": ("tasks.db", lambda p: SqliteTaskStore(p)),
}


def _fill_until_full(store: TaskStore) -> int:
    """Write ever larger tasks until the disk is full; returns how many were written."""
    n = 0
    with pytest.raises(StoreError) as err:
        for i in range(10_000):
            store.upsert_task(sample_task(f"big-{i}", metadata={"blob": "x" * 20_000}), NOW)
            n += 1
    assert "No space" in str(err.value) or "full" in str(err.value).lower(), err.value
    return n


@pytest.mark.parametrize("kind", sorted(STORES))
def test_full_disk_gives_store_error_and_keeps_what_was_written(small_fs: Path, kind: str) -> None:
    name, opener = STORES[kind]
    path = small_fs / name
    store = opener(path)
    store.upsert_task(sample_task("keep-me"), NOW)
    written = _fill_until_full(store)
    store.close()
    reopened = opener(path)
    ids = [d["id"] for d in reopened.load_tasks()]
    # every write that returned is there, in order, and the file is readable
    assert ids[0] == "keep-me"
    assert ids[1:] == [f"big-{i}" for i in range(written)]
    reopened.close()


@pytest.mark.parametrize("kind", sorted(STORES))
def test_read_only_mount_gives_store_error_and_leaves_the_file(small_fs: Path, kind: str) -> None:
    name, opener = STORES[kind]
    path = small_fs / name
    store = opener(path)
    store.upsert_task(sample_task("before"), NOW)
    store.close()
    before = path.read_bytes()
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        with pytest.raises(StoreError) as err:
            ro = opener(path)
            ro.upsert_task(sample_task("after"), NOW)
        assert str(path.name) in str(err.value) or str(small_fs) in str(err.value), err.value
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    assert path.read_bytes() == before
    again = opener(path)
    assert [d["id"] for d in again.load_tasks()] == ["before"]
    again.close()
