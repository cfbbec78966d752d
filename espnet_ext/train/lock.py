"""One trainer per experiment: an exclusive lock on the output directory.

The trainer (rank 0; the other ranks belong to the same job) takes ``flock(LOCK_EX |
LOCK_NB)`` on ``<output_dir>/.train.lock`` before it touches the directory's checkpoints,
and holds it until the run ends. The file says who holds it (pid, host, start time); a
second trainer on the same directory stops at once with::

    output dir X is in use by pid P on host H since T

The kernel drops a flock when the holder's last file descriptor closes, including on
SIGKILL, so a stale lock file never blocks a resume. (DataLoader workers forked by the
holder share its descriptor: the lock lasts until they are gone too, a few seconds.)
"""

import datetime
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Optional

LOCK_NAME = ".train.lock"


class OutputDirInUse(RuntimeError):
    """Another trainer holds the output directory's lock."""


class OutputDirLock:
    """``flock`` on ``<output_dir>/.train.lock``; :meth:`acquire` raises
    :class:`OutputDirInUse` naming the holder."""

    def __init__(self, output_dir):
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / LOCK_NAME
        self._fd: Optional[int] = None

    def acquire(self) -> "OutputDirLock":
        self.output_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise OutputDirInUse(
                f"output dir {self.output_dir} is in use by pid {holder.get('pid', '?')} on host "
                f"{holder.get('host', '?')} since {holder.get('since', '?')}: another training "
                f"runs on it (stop it first, or use another --output_dir); lock file {self.path}"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closes the flock (the file stays; its content is stale)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}  # being written by the holder right now
