"""An index folder's files: their names, the one writer's lock, and one-line typed errors for their failures.

Also the crash points the crash-safety tests kill the process at (``SOTRAG_CRASH_AT``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from sotrag.retrieval.errors import IndexCorruptError, IndexLockedError, IndexWriteError, RetrievalError

STORE_FILE = "store.sqlite"
LOCK_FILE = "LOCK"
_crash_counts: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Fault injection for the crash-safety tests: SOTRAG_CRASH_AT=<name>[:N] kills the process right here
    (at the N-th time this point is reached; the first by default)."""
    want = os.environ.get("SOTRAG_CRASH_AT", "")
    point, _, nth = want.partition(":")
    if point != name:
        return
    _crash_counts[name] = _crash_counts.get(name, 0) + 1
    if _crash_counts[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def writer_lock(directory: Path) -> Iterator[None]:
    """Exclusive, non-blocking ``flock`` on ``LOCK``: a second writer fails at once with a clear message."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            who = f" (pid {holder})" if holder else ""
            raise IndexLockedError(f"index is locked: another process{who} is writing to {directory}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _nearly_full(directory: Path) -> bool:
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


def read_only_mount(directory: Path) -> bool:
    return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def storage_error(exc: BaseException, directory: Path) -> RetrievalError:
    """The one-line, typed error for a failure of the index's own files (SQLite, FAISS, the folder)."""
    if isinstance(exc, sqlite3.DatabaseError):
        text = str(exc).lower()
        if "full" in text:
            return _write_error(directory, "no space left on device")
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            return _write_error(directory, "the folder or its files are not writable")
        if "malformed" in text or "not a database" in text or "no such table" in text or "corrupt" in text:
            return IndexCorruptError(
                f"the index store in {directory} is damaged ({exc}); remove the folder and ingest again"
            )
        if "disk i/o error" in text:  # SQLite could not grow its WAL or shared-memory file: often a full disk
            return _write_error(directory, "no space left on device" if _nearly_full(directory) else "disk I/O error")
        if "locked" in text or "busy" in text:
            return IndexLockedError(f"the index store in {directory} is busy ({exc}); try again")
        return IndexCorruptError(f"cannot use the index store in {directory}: {exc}")
    if isinstance(exc, OSError):
        if exc.errno in _NO_SPACE:
            return _write_error(directory, "no space left on device")
        if exc.errno in _NOT_WRITABLE:
            return _write_error(directory, "the folder or its files are not writable")
        where = f" ({Path(exc.filename).name})" if exc.filename else ""
        return _write_error(directory, f"{exc.strerror or exc}{where}")
    return RetrievalError(f"index {directory}: {type(exc).__name__}: {exc}")


def _write_error(directory: Path, reason: str) -> IndexWriteError:
    return IndexWriteError(
        f"cannot write the index in {directory}: {reason}. The index is intact (it holds everything committed "
        "before this); fix that and run the command again",
        reason,
    )


@contextlib.contextmanager
def storage_errors(directory: Path) -> Iterator[None]:
    """Translate failures of the index's own files into typed one-line errors (:func:`storage_error`).

    Input files are read (and their errors reported per file) inside, but never raise out of it."""
    try:
        yield
    except RetrievalError:
        raise
    except (sqlite3.DatabaseError, OSError) as exc:
        raise storage_error(exc, directory) from exc
