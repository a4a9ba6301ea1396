"""How many CPUs this process may use: its cgroup's CPU limit, else the CPUs it may run on.

A container's CPU limit is a CFS quota: cgroup v2 writes it in `cpu.max` ("200000 100000", or "max"
without a limit), cgroup v1 in `cpu.cfs_quota_us` (-1 without a limit) and `cpu.cfs_period_us`. The
limit that applies is the smallest of the process's cgroup and its ancestors'. A fraction counts as
a whole CPU (1.5 CPUs -> 2), as Kubernetes rounds a `resourceFieldRef` of limits.cpu.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPU limit of this process's cgroup in CPUs (1.5 for 1500m), or None without a limit."""
    quotas = [q for folder in _cgroup_folders(root, proc_cgroup) if (q := _quota(folder)) is not None]
    return min(quotas, default=None)


def available_cpus() -> int:
    """The CPUs the scheduler lets this process run on (os.cpu_count() where affinity is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_processes(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The cgroup's CPU limit rounded up, never more than the CPUs available; at least 1."""
    available = available_cpus()
    limit = cpu_limit(root, proc_cgroup)
    if limit is None:
        return max(available, 1)
    return max(1, min(math.ceil(limit - 1e-9), available))


def _cgroup_folders(root: Path, proc_cgroup: Path) -> list[Path]:
    """The folders that may hold this process's CPU quota: its v2 or v1 cpu cgroup and its ancestors."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    folders: list[Path] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            base = root if (root / "cgroup.controllers").exists() else root / "unified"
        elif "cpu" in controllers.split(","):
            base = root / ("cpu" if (root / "cpu").exists() else controllers)
        else:
            continue
        here = base / path.lstrip("/")
        folders += [here, *(p for p in here.parents if p.is_relative_to(base))]
    return folders or [root, root / "cpu"]


def _quota(folder: Path) -> float | None:
    try:
        if (folder / "cpu.max").exists():
            quota, _, period = (folder / "cpu.max").read_text().strip().partition(" ")
            return None if quota == "max" else int(quota) / int(period or "100000")
        if (folder / "cpu.cfs_quota_us").exists():
            quota_us = int((folder / "cpu.cfs_quota_us").read_text())
            period_us = int((folder / "cpu.cfs_period_us").read_text())
            return None if quota_us < 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
    return None
