"""Several processes opening the same brand-new SQLite quota store at the same instant.

CI once failed when two quota workers started together: one of them got ``database is locked``
from ``PRAGMA journal_mode=WAL`` (SQLite reports that race without calling its busy handler).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import PROJECT_ROOT

OPENER = """
import sys, time
from resources.ratelimit.stores import SQLiteQuotaStore
start_at = float(sys.argv[2])
while time.time() < start_at:
    time.sleep(0.0005)
store = SQLiteQuotaStore(sys.argv[1])
print(store._conn.execute("PRAGMA journal_mode").fetchone()[0])
store.close()
"""


def test_processes_opening_a_new_store_at_once_all_succeed_in_wal_mode(tmp_path: Path) -> None:
    for attempt in range(5):
        path = tmp_path / f"quota-{attempt}.sqlite"
        start_at = time.time() + 1.5
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPENER, str(path), str(start_at)],
                cwd=PROJECT_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err[-2000:]
            assert out.strip() == "wal"
