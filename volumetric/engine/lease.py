"""One run at a time per output: a lease held as an OS file lock in the journal.

::

    OUT/.volumetric/lease     {"host": ..., "pid": ..., "since": ...}, locked while a run writes

The lease is an exclusive ``flock`` on that file, held from the moment an
operation claims its output until the output is complete. A second run on
the same output finds the lock taken and is refused, with the holder's host
and pid in the message. A run that dies (``kill -9``, a crash, a lost host on
a shared file system with lock recovery) holds nothing any more: the system
drops its lock with the process, so the next run takes the lease over
without any staleness guess.

Releasing unlinks the file while still locked, then closes it; a run that
opened the old file in between finds, after locking, that its file is no
longer the one at the path, and tries again.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from volumetric.errors import DestinationError

LEASE_NAME = "lease"
log = logging.getLogger("volumetric")

# Leases this process holds, by path: a call that raised before completing its output
# leaves its lease here, and the next call of this process on that output takes it over.
_held: dict[str, Lease] = {}


class Lease:
    """The exclusive right of this process to write one output.

    Parameters
    ----------
    folder : str or Path
        The journal folder (``OUT/.volumetric``) the lease file lives in.
    """

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / LEASE_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this lease is currently held."""
        return self._fd is not None

    def acquire(self, *, what: str) -> None:
        """Take the lease, or refuse when another live run holds it.

        Parameters
        ----------
        what : str
            The output, for the message.

        Raises
        ------
        DestinationError
            Another run (named by host and pid) writes ``what`` now.
        """
        key = str(self.path.resolve())
        earlier = _held.pop(key, None)
        if earlier is not None:
            earlier.release()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe(fd)
                os.close(fd)
                raise DestinationError(
                    f"{what} is being written by another run ({holder}); wait for it to end "
                    "or stop it, then rerun"
                ) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                log.warning("the file system of %s has no file locks: a second run on the "
                            "same output is not refused", what)
                return
            if _same_inode(fd, self.path):
                self._fd = fd
            else:  # released and unlinked by its holder while we waited for the lock
                os.close(fd)
        record = {"host": socket.gethostname(), "pid": os.getpid(),
                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(record).encode(), 0)
        _held[key] = self

    def release(self) -> None:
        """Give the lease up (the file goes); nothing happens when it is not held."""
        if self._fd is None:
            return
        _held.pop(str(self.path.resolve()), None)
        if _same_inode(self._fd, self.path):
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
        try:
            self.path.parent.rmdir()  # only when the lease was all it held
        except OSError:
            pass


def acquire_lease(folder: str | Path, *, what: str) -> Lease:
    """Take the lease of the output whose journal folder is ``folder`` (see :class:`Lease`).

    Raises
    ------
    DestinationError
        Another live run holds it; the message names its host and pid.
    """
    lease = Lease(folder)
    lease.acquire(what=what)
    return lease


def release_lease(folder: str | Path) -> None:
    """Give up the lease this process holds in ``folder``, if any."""
    lease = _held.get(str((Path(folder) / LEASE_NAME).resolve()))
    if lease is not None:
        lease.release()


def _same_inode(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _describe(fd: int) -> str:
    """The holder of a locked lease file, as its record names it."""
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"host {record['host']}, pid {record['pid']}, since {record['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a run that is starting"
