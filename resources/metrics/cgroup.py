"""A process's memory cgroup: its limit and how many times the kernel's OOM killer struck in it.

What an alert about a killed run can say for certain: a process killed by the OOM killer
leaves no exit status to anyone but its parent, but its cgroup counts the kill (``oom_kill``
in ``memory.events`` on cgroup v2, in ``memory.oom_control`` on v1). A run worker records its
cgroup and that count when it starts (``fin_assets/dagster_internals/runs.py``); whoever finds it
dead reads the
count again: more kills than at the start means the OOM killer acted during the run.

Under systemd the cgroup is the service's (``/system.slice/fin-assets-code.service``), so it
outlives the run; ``MemoryMax=`` in the unit is the limit read here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC = Path("/proc")
# cgroup v1 reports "no limit" as the largest page-aligned 64-bit value, not as "max".
_V1_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class MemoryCgroup:
    version: int  # 1 or 2
    path: str  # in its hierarchy, e.g. "/system.slice/fin-assets-code.service"
    root: Path = CGROUP_ROOT

    @property
    def directory(self) -> Path:
        base = self.root / "memory" if self.version == 1 else self.root
        return base / self.path.lstrip("/")

    def memory_max(self) -> int | None:
        """The memory limit in bytes; None when there is none or it cannot be read."""
        name = "memory.limit_in_bytes" if self.version == 1 else "memory.max"
        text = _read(self.directory / name)
        if text is None or not text.isdigit():
            return None  # "max" (v2), or unreadable
        value = int(text)
        return None if self.version == 1 and value >= _V1_UNLIMITED else value

    def oom_kills(self) -> int | None:
        """Processes the OOM killer has killed in this cgroup so far; None if not readable."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        text = _read(self.directory / name)
        if text is None:
            return None
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return None

    def encode(self) -> str:
        """``v<version>:<path>``, for a run tag."""
        return f"v{self.version}:{self.path}"

    @classmethod
    def decode(cls, text: str, *, root: Path | None = None) -> MemoryCgroup | None:
        version, sep, path = text.partition(":")
        if not sep or version not in ("v1", "v2") or not path.startswith("/"):
            return None
        return cls(int(version[1]), path, root or CGROUP_ROOT)


def memory_cgroup_of(
    pid: int | str = "self", *, proc: Path = PROC, root: Path = CGROUP_ROOT
) -> MemoryCgroup | None:
    """The memory cgroup of a process (v1's memory controller when it is mounted, else the
    unified v2 hierarchy); None off Linux or when the process is gone."""
    text = _read(proc / str(pid) / "cgroup")
    if text is None:
        return None
    unified = None
    for line in text.splitlines():
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if "memory" in controllers.split(","):
            return MemoryCgroup(1, path or "/", root)
        if controllers == "" and path:
            unified = MemoryCgroup(2, path, root)
    return unified


def describe_bytes(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
