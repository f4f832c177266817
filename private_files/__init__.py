"""Files that hold secrets are their owner's alone: created 0600, in folders Spoke creates 0700.

The hub's (zigpy's database and the network backups carry the Zigbee network key; the outbox) and the
cloud's (the registry with its token hashes, the broker secret). Hub and cloud both use this package,
which knows nothing of either."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents 0700; folders that exist are left as they are."""
    missing: list[Path] = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:  # made meanwhile by another process
            continue
        os.chmod(folder, 0o700)  # whatever the umask


def private_file(path: Path) -> None:
    """Make ``path`` exist as a file only its owner can read or write; an existing one that others
    may read is tightened (a file from before this rule, or copied in)."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        _tighten(fd, path)
    finally:
        os.close(fd)


def private_sqlite(path: Path) -> None:
    """A SQLite database file made private before SQLite opens it; SQLite gives the -wal and -shm
    files it creates the database's mode, and leftovers from before are tightened here."""
    private_file(path)
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        try:
            fd = os.open(companion, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            _tighten(fd, companion)
        finally:
            os.close(fd)


def _tighten(fd: int, path: Path) -> None:
    if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
        try:
            os.fchmod(fd, 0o600)
        except PermissionError:
            log.warning("%s is readable by others and not ours to change: chmod 600 it", path)
