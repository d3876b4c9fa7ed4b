"""Atomic file writes: temp file in the target's folder, fsync, ``os.replace``, fsync the folder.

A reader sees either the previous complete file or the new complete file, never a torn one,
even if the writer is SIGKILLed halfway (the temp file is left behind and swept later).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TEMP_PREFIX = ".tmp-"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> os.stat_result:
    """Let ``write`` fill a temp file next to ``path``, then swap it in atomically. Returns the
    status of the file written (its inode is the one ``path`` has after the swap)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}-{path.name}"
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
            written = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    return written


def atomic_write_bytes(path: Path, data: bytes) -> os.stat_result:
    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return atomic_write(path, write)


# Files fsynced at once by atomic_write_many: concurrent fsyncs share the journal's commits.
FSYNC_THREADS = 8


def atomic_write_many(files: Sequence[tuple[Path, bytes]]) -> None:
    """Several small files, each replaced atomically as ``atomic_write`` does (a crash leaves
    each target its previous complete content or its new one), at a fraction of the cost:
    every temp file is written and fsynced by a few threads at once (the filesystem's journal
    then commits them together: 0.13 ms a file here against 0.31 ms one after another), then
    each is renamed over its target and each directory is fsynced once. A range run writes a
    manifest per partition. (``os.sync()`` would be cheaper still, but it waits for every dirty
    page of the host: another process's writes would stall this one.)"""
    if not files:
        return
    temps: list[tuple[Path, Path]] = []

    def write(item: tuple[Path, Path, bytes]) -> None:
        tmp, _, data = item
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    try:
        items = []
        for path, data in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}-{path.name}"
            temps.append((tmp, path))
            items.append((tmp, path, data))
        with ThreadPoolExecutor(min(FSYNC_THREADS, len(items))) as pool:
            list(pool.map(write, items))
        for tmp, path in temps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise
    for directory in {path.parent for _, path in temps}:
        _fsync_dir(directory)


def sweep_temp_files(root: Path, *, older_than_s: float = 3600.0) -> int:
    """Remove temp files orphaned by killed writers; young ones may belong to a live writer."""
    if not root.exists():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for tmp in root.rglob(f"{TEMP_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
                removed += 1
    return removed
