"""Files and folders only their owner may read: the database (it holds the encrypted secrets), the logs,
the pid file and the embedded broker's task messages."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

PRIVATE_FILE_MODE = 0o600
PRIVATE_FOLDER_MODE = 0o700


def private_folder(path: Path) -> Path:
    """Create `path` and any missing parents as 0700 folders; tighten it if it already exists more open."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_FOLDER_MODE, exist_ok=True)
    _tighten(path, PRIVATE_FOLDER_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty as a 0600 file unless it exists; tighten an existing file that others could read.

    An existing file is never opened here: closing a descriptor of a SQLite database would drop the POSIX
    locks that the process's SQLite connections hold on it.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    except FileExistsError:
        _tighten(path, PRIVATE_FILE_MODE)
    return path


def _tighten(path: Path, mode: int) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current & 0o077:
        try:
            os.chmod(path, current & mode)
        except PermissionError:
            # Someone else's file (a shared volume, say): say so rather than fail the command.
            logger.warning("%s is readable by other users and is not ours to change (mode %o)", path, current)
