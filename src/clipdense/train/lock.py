"""One run per run folder: an exclusive lock that the kernel releases when its holder dies.

Two trainings writing into one folder mix their checkpoints, configs and metrics (and one deletes the
other's temporary checkpoint folder). ``RUN/.clipdense.lock`` is held with ``flock`` for the whole run:
a second run into the folder fails at once with a line naming the holder, and a lock left by a killed
run (the file remains, the kernel lock does not) is taken over. The file is never deleted, so two
starters can never lock two different files of the same name.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

try:  # POSIX; elsewhere the holder's pid decides (see _pid_alive)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".clipdense.lock"


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by someone else
        return True
    return True


def describe_holder(info: dict[str, Any]) -> str:
    """'pid 123 on host-a since 2024-05-01 12:00:00 (clipdense train ...)' from a lock file's record."""
    text = f"pid {info.get('pid', '?')} on {info.get('host', '?')}"
    if info.get("started"):
        text += f" since {info['started']}"
    if info.get("command"):
        text += f" ({info['command']})"
    return text


@dataclass
class RunLock:
    """The lock of ``run_dir``; ``acquire()`` raises ConfigError naming ``flag`` and the holder when taken.

    After ``acquire``, ``stale`` is the record of a killed run whose lock was taken over (None if the folder
    was free or its last run ended cleanly).
    """

    run_dir: Path
    flag: str = "--out"
    stale: dict[str, Any] | None = None
    _fd: int | None = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        return Path(self.run_dir) / LOCK_FILE

    def acquire(self) -> "RunLock":
        run_dir = Path(self.run_dir)
        if run_dir.exists() and not run_dir.is_dir():
            raise ConfigError(f"{self.flag} {run_dir}: is a file, expected a run folder (new or one of a run)")
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)   # the umask applies, as for any file
        try:
            self._lock(fd)
            previous = _read(fd)
            self.stale = previous or None
            _write(fd, {"pid": os.getpid(), "host": socket.gethostname(),
                        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": _command()})
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def _lock(self, fd: int) -> None:
        """flock without waiting; where the file system has no locks, a live holder pid on this host refuses."""
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                self._refuse(_read(fd))
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
        holder = _read(fd)
        if holder and holder.get("host") == socket.gethostname() and _pid_alive(int(holder.get("pid", 0))):
            self._refuse(holder)

    def _refuse(self, holder: dict[str, Any]) -> None:
        who = describe_holder(holder) if holder else "a process that has not written its record yet"
        raise ConfigError(f"{self.flag} {self.run_dir}: another run is writing into this folder ({who}); "
                          f"wait for it to end or choose another {self.flag}")

    def release(self) -> None:
        """Empty the record (a clean end, not a stale lock) and let the kernel lock go."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _command() -> str:
    """The command line that holds the lock, shortened for error messages."""
    words = [Path(sys.argv[0]).name] + sys.argv[1:] if sys.argv and sys.argv[0] else []
    text = " ".join(words)
    return text if len(text) <= 120 else text[:117] + "..."


def _read(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    try:
        record = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, ValueError):
        return {"pid": "?", "host": "?", "command": "unreadable lock record"}
    return record if isinstance(record, dict) else {}


def _write(fd: int, record: dict[str, Any]) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(record) + "\n").encode())
    os.fsync(fd)
