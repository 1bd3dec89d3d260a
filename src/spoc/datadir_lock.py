"""One embedded Spoc per data directory: an exclusive lock on `<data>/spoc.lock` while it runs.

Two processes on one data directory would fight over SQLite's write lock and each keep its own
in-memory bus, so one's events would never reach the other's consumers. The lock is fcntl's
`flock`: the kernel drops it when the process dies, however it dies, so a crash leaves no stale
lock behind. The file says who holds it, for the message the next one prints."""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

LOCK_FILE = "spoc.lock"


class DataDirInUse(Exception):
    """Another process runs Spoc on this data directory."""

    def __init__(self, data_dir: Path, holder: str) -> None:
        super().__init__(
            f"the data directory {data_dir} is in use by another Spoc ({holder}); "
            "stop that one first, or give this one another --data-dir"
        )
        self.data_dir = data_dir
        self.holder = holder


class DataDirLock:
    def __init__(self, data_dir: Path, *, url: str | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.path = self.data_dir / LOCK_FILE
        self._url = url
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Takes the lock or raises DataDirInUse at once; a no-op when already held."""
        if self._fd is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # No O_TRUNC: the holder's note must survive a refused contender opening the file.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _describe(os.read(fd, 4096))
            os.close(fd)
            raise DataDirInUse(self.data_dir, holder) from None
        note = {"pid": os.getpid(), "url": self._url, "since": datetime.now(UTC).isoformat()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(note).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.release()


def _describe(raw: bytes) -> str:
    try:
        note = json.loads(raw)
        parts = [f"pid {int(note['pid'])}"]
    except (ValueError, KeyError, TypeError):
        return "a process that has not said which"
    if note.get("url"):
        parts.append(f"serving {note['url']}")
    if note.get("since"):
        parts.append(f"since {note['since']}")
    return ", ".join(parts)
