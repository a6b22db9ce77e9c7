"""``RunLock``: one ``vqa fit`` at a time writes into a run folder.

The lock is an advisory ``flock`` on ``RUN/.lock``, held for the whole run; the file names the
process and host holding it. The kernel releases a ``flock`` when its process ends, however it
ends, so a lock left by a dead process is recognised (the file still names it, but nobody holds
it) and taken over. On network file systems ``flock`` is as reliable as the file system's locking
(NFSv4 and Lustre honour it across hosts).
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from pathlib import Path

NAME = ".lock"


class RunLock:
    """Hold the lock of run folder ``folder`` (``acquire``) until ``release`` or the process ends.

    A second run into the same folder gets a ``ValueError`` naming the process and host holding
    it."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / NAME
        self._file = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # noqa: SIM115 (held open while the run lasts)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise ValueError(f"{self.path.parent} is in use: {holder} is writing into it; wait "
                             "for it to end, or point this run elsewhere "
                             "(--trainer.default_root_dir)") from None
        f.seek(0)
        left = f.read().strip()
        if left:  # written by a run that ended without releasing: it was killed
            print(f"{self.path}: taking over the lock of {left}, which has ended", file=sys.stderr)
        f.truncate(0)
        f.write(f"process {os.getpid()} on host {socket.gethostname()} (since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        """Empty the file (a run that ended cleanly) and let go of the lock."""
        if self._file is not None:
            self._file.truncate(0)
            self._file.close()  # closing releases the flock
            self._file = None
