"""The code location as a deployment runs it: from a checkout mounted read-only (the systemd
units' ``ProtectSystem=strict``, only ``/var/lib/fin-assets`` writable), on a day of a later
year (the calendar cache was once named after the year, so the first start of 2027 wrote into
the checkout and failed).

The checkout is a copy of the project's code, bind-mounted read-only in a user namespace
(``unshare``: read-only for root too, as systemd's mount is); the clock is libfaketime's, for
the whole process and its children, Dagster and C code included.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from resources.calendars import SESSIONS_THROUGH
from tests.helpers import BIN, PROJECT_ROOT, dagster_home, required_tool

CODE = ("fin_assets", "resources", "pyproject.toml", "dagster.yaml", "workspace.yaml")
# Python runs this first in every process (PYTHONPATH): the environment's editable install of
# the project points at the project itself, so the copy takes its place on sys.path, as a
# deployment's venv holds its own checkout; and the process reports what it loaded, and when.
SITECUSTOMIZE = """
import atexit, datetime, json, os, sys

installed, copy = os.environ["CHECKOUT_SWAP"].split("=", 1)
sys.path[:] = [copy if entry == installed else entry for entry in sys.path]


def report():
    module = sys.modules.get("fin_assets")
    if module is not None:
        with open(os.environ["CHECKOUT_REPORT"], "a") as out:
            seen = {"fin_assets": module.__file__, "today": datetime.date.today().isoformat()}
            out.write(json.dumps(seen) + "\\n")


atexit.register(report)
"""
# sh -c: mount $1 read-only over itself (in this namespace only), then run the rest there.
READ_ONLY = (
    'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && cd "$1" && shift && exec "$@"'  # noqa: E501
)


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root``: size and modification time."""
    return {
        str(path.relative_to(root)): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in [root, *root.rglob("*")]
    }


def load_in_checkout(
    checkout: Path, tmp_path: Path, day: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """`dagster definitions validate` in the read-only ``checkout`` with the clock at ``day``,
    in a fresh shell (no FIN_* variable but ``env``)."""
    shim = tmp_path / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(SITECUSTOMIZE)
    shell = {k: v for k, v in os.environ.items() if not k.startswith(("FIN_", "DAGSTER_"))}
    command = [
        required_tool("unshare", "util-linux"),
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        READ_ONLY,
        "sh",
        str(checkout),
        required_tool("faketime", "faketime"),
        "-f",
        f"@{day} 12:00:00",
        str(BIN / "dagster"),
        "definitions",
        "validate",
    ]
    return subprocess.run(
        command,
        env={
            **shell,
            **env,
            "PYTHONPATH": str(shim),
            "CHECKOUT_SWAP": f"{PROJECT_ROOT}={checkout}",
            "CHECKOUT_REPORT": str(tmp_path / "report.jsonl"),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow(10)
def test_the_code_location_loads_from_a_read_only_checkout_on_2_january_2027(
    tmp_path: Path,
) -> None:
    checkout = tmp_path / "checkout"
    for name in CODE:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, checkout / name)
    before = tree(checkout)

    # Without FIN_DATA_DIR, the data would go into the checkout: refused before anything runs,
    # naming the variable and what to do.
    home = dagster_home(tmp_path / "home")
    refused = load_in_checkout(checkout, tmp_path, "2027-01-02", DAGSTER_HOME=str(home))
    assert refused.returncode != 0
    assert (
        f"FIN_DATA_DIR is unset and its default {checkout}/data cannot hold the snapshots and "
        f"tables: it does not exist and cannot be created: {checkout} is not writable (a "
        "read-only file system); point FIN_DATA_DIR at a directory"
    ) in refused.stdout + refused.stderr, refused.stderr[-3000:]

    # As the systemd units run it: DAGSTER_HOME and FIN_DATA_DIR under /var/lib/fin-assets.
    loaded = load_in_checkout(
        checkout,
        tmp_path,
        "2027-01-02",
        DAGSTER_HOME=str(home),
        FIN_DATA_DIR=str(tmp_path / "data"),
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert "All code locations passed validation" in loaded.stdout + loaded.stderr
    assert tree(checkout) == before, "the load wrote into the checkout"
    seen = [json.loads(line) for line in (tmp_path / "report.jsonl").read_text().splitlines()]
    assert seen and all(s["fin_assets"].startswith(str(checkout)) for s in seen), seen
    assert {s["today"] for s in seen} == {"2027-01-02"}
    # The sessions are cached in the Dagster home, through a horizon that is not the year's.
    cached = sorted(p.name for p in (home / "fin_assets_cache" / "calendars").iterdir())
    assert len(cached) == 1 and cached[0].startswith("XNYS-"), cached
    assert cached[0].endswith(f"-{SESSIONS_THROUGH}.json"), cached
