"""How many worker processes `outbound worker` runs: the cgroup's CPU limit, the setting, the help."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from outbound_sender import cli, worker_pod
from outbound_sender.quota.ratelimit import Limits, LocalGcra, WhatsAppRateLimiter
from outbound_sender.worker import cpus
from outbound_sender.worker.settings import WorkerSettings


def cgroup(tmp_path: Path, files: dict[str, str], membership: str) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(membership)
    return root, proc


@pytest.mark.parametrize(
    ("files", "membership", "limit"),
    [
        ({"cgroup.controllers": "cpu", "cpu.max": "200000 100000\n"}, "0::/\n", 2.0),
        ({"cgroup.controllers": "cpu", "cpu.max": "150000 100000\n"}, "0::/\n", 1.5),
        ({"cgroup.controllers": "cpu", "cpu.max": "max 100000\n"}, "0::/\n", None),
        # the smallest quota of the cgroup and its ancestors applies
        (
            {"cgroup.controllers": "cpu", "cpu.max": "max 100000", "kubepods/pod1/cpu.max": "300000 100000"},
            "0::/kubepods/pod1\n",
            3.0,
        ),
        (
            {"cgroup.controllers": "cpu", "kubepods/cpu.max": "100000 100000", "kubepods/pod1/cpu.max": "max 100000"},
            "0::/kubepods/pod1\n",
            1.0,
        ),
        # cgroup v1: cfs quota and period, -1 without a limit
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, "3:cpu,cpuacct:/\n", 0.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "3:cpu,cpuacct:/\n", None),
        ({}, "", None),  # no cgroup files at all
    ],
)
def test_the_cpu_limit_is_read_from_cgroup_v2_or_v1(
    tmp_path: Path, files: dict[str, str], membership: str, limit: float | None
) -> None:
    root, proc = cgroup(tmp_path, files, membership)
    assert cpus.cpu_limit(root, proc) == limit


@pytest.mark.parametrize(("quota", "available", "expected"), [(150000, 8, 2), (50000, 8, 1), (400000, 2, 2)])
def test_the_default_is_the_limit_rounded_up_at_most_the_cpus_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quota: int, available: int, expected: int
) -> None:
    root, proc = cgroup(tmp_path, {"cgroup.controllers": "cpu", "cpu.max": f"{quota} 100000"}, "0::/\n")
    monkeypatch.setattr(cpus, "available_cpus", lambda: available)
    assert cpus.default_processes(root, proc) == expected


def test_without_a_limit_the_default_is_the_cpus_available(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, proc = cgroup(tmp_path, {"cgroup.controllers": "cpu", "cpu.max": "max 100000"}, "0::/\n")
    monkeypatch.setattr(cpus, "available_cpus", lambda: 6)
    assert cpus.default_processes(root, proc) == 6


def test_the_setting_overrides_the_default_and_refuses_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("outbound_sender.worker.settings.default_processes", lambda: 4)
    assert WorkerSettings().process_count() == 4
    monkeypatch.setenv("OUTBOUND_WORKER_PROCESSES", "3")
    assert WorkerSettings().process_count() == 3
    monkeypatch.setenv("OUTBOUND_WORKER_PROCESSES", "0")
    with pytest.raises(ValidationError, match="processes"):
        WorkerSettings()


def test_worker_help_names_the_setting() -> None:
    shown = CliRunner().invoke(cli.cli, ["worker", "--help"], terminal_width=200)
    assert shown.exit_code == 0
    assert "OUTBOUND_WORKER_PROCESSES" in shown.output
    assert "CPU limit" in shown.output


class FakeProcess:
    def __init__(self, returncode: int | None) -> None:
        self.returncode = returncode


def child(index: int, *, ready: bool, returncode: int | None = None) -> Any:
    return worker_pod.Child(index, FakeProcess(returncode), None, None, ready=ready)  # type: ignore[arg-type]


def test_the_pod_is_ready_only_when_every_process_started_and_none_ended() -> None:
    ready = [child(0, ready=True), child(1, ready=True)]
    assert worker_pod.readiness(ready, 2) is None
    assert worker_pod.readiness(ready[:1], 2) == "worker processes not running: 1 of 2"
    assert worker_pod.readiness([ready[0], child(1, ready=False)], 2) == "worker processes not running: 1 of 2"
    ended = [child(0, ready=True, returncode=-9), ready[1]]
    assert worker_pod.readiness(ended, 2) == "worker processes not running: 0 of 2"


async def admitted_at_once(processes: int) -> int:
    """Sends one worker process admits to one WhatsApp number at one instant (frozen clock)."""
    limiter = WhatsAppRateLimiter(None, processes=processes)
    limiter.local = LocalGcra(clock=lambda: 100.0)
    limits = Limits(messages_per_second=40, pair_interval_seconds=0.001, burst_seconds=1.0)
    verdicts = [await limiter.check("PN1", f"+1555000{n:04d}", limits) for n in range(200)]
    return sum(v.allowed for v in verdicts)


async def test_without_redis_each_process_of_a_pod_takes_its_share_of_a_numbers_rate() -> None:
    """The pod's processes keep the limits in process: together they stay within the number's rate."""
    alone, pod_of_two, pod_of_four = [await admitted_at_once(n) for n in (1, 2, 4)]
    assert alone == 41  # 1 s of burst at 40/s, and the first
    assert pod_of_two == 21
    assert pod_of_four == 11
