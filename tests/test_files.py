"""Private files and folders: created owner-only, and tightened when an older version left them open."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from teckochecker.files import private_file, private_folder


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_and_folders_are_owner_only(tmp_path: Path) -> None:
    folder = private_folder(tmp_path / "state" / "broker" / "queue")
    assert [_mode(path) for path in (folder, folder.parent, folder.parent.parent)] == [0o700] * 3
    assert _mode(private_file(folder / "teckochecker.pid")) == 0o600


def test_existing_open_files_are_tightened_and_keep_their_content(tmp_path: Path) -> None:
    log = tmp_path / "teckochecker.log"
    log.write_text("earlier lines\n")
    os.chmod(log, 0o644)
    (tmp_path / "broker").mkdir(mode=0o755)
    os.chmod(tmp_path / "broker", 0o755)

    assert _mode(private_file(log)) == 0o600 and log.read_text() == "earlier lines\n"
    assert _mode(private_folder(tmp_path / "broker")) == 0o700


def test_tightening_a_database_in_use_keeps_sqlites_locks(tmp_path: Path) -> None:
    # Closing any descriptor of a file drops the process's POSIX locks on it, SQLite's included: another
    # process could then write while this one holds a write transaction.
    database = tmp_path / "teckochecker.db"
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    os.chmod(database, 0o644)

    private_file(database)

    other_process = (
        "import sqlite3, sys\n"
        "connection = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
        "try:\n    connection.execute('BEGIN IMMEDIATE')\n    print('acquired')\n"
        "except sqlite3.OperationalError as error:\n    print(error)\n"
    )
    answer = subprocess.run([sys.executable, "-c", other_process, str(database)], capture_output=True, text=True)
    holder.close()
    assert answer.stdout.strip() == "database is locked"
    assert _mode(database) == 0o600
