"""`make bench`'s table: median and range of each figure over the runs, ratios between medians."""

from __future__ import annotations

import pytest

from bench.__main__ import FASTEST, FULL, QUICK, main, spreads, table
from bench.common import Spread
from bench.pickup import Marks, split


def test_spread_gives_median_and_range() -> None:
    assert Spread((3.0, 10.0, 1.0)).median == 3.0
    assert Spread((3_000.0, 10_000.0, 1_000.0)).text(unit=" msg/s") == "3,000 msg/s (1,000-10,000)"
    assert Spread((2.5,)).text(".1f", " ms") == "2.5 ms"


def test_ratios_are_taken_between_medians() -> None:
    results = {
        "L": {"msgs_per_s": [1_000.0, 10_000.0, 3_000.0]},  # median 3,000 (mean would be 4,667)
        "L_ref": {"msgs_per_s": [2_000.0, 6_000.0, 4_000.0]},  # median 4,000
        "B3": {"p50_ms": [1.0, 1.0, 1.0], "p95_ms": [2.0, 9.0, 3.0], "max_ms": [5.0, 5.0, 5.0]},
        "P_lat": {"p50_ms": [1.0, 1.0, 1.0], "p95_ms": [4.0, 4.0, 6.0], "max_ms": [9.0, 9.0, 9.0]},
    }
    text = table(spreads(results), QUICK)

    assert "| L / L_ref | 0.75  (target >= 0.85, goal 1.0) |" in text
    assert "| B3 p95 / PGQueuer p95 | 0.75  (target <= 1.0) |" in text
    assert "| B3 p95 / PGQueuer p95, worst run | 2.25  (target <= 1.0 in every run) |" in text  # run 2: 9 / 4
    assert "3,000 msg/s (1,000-10,000)" in text
    assert "B1 / P" not in text  # a measure that did not run gives no ratio
    assert "L_ref / L in server CPU" not in text  # nor a figure that was not measured
    results["L"]["cpu_us_per_msg"] = [200.0, 150.0, 400.0]
    results["L_ref"]["cpu_us_per_msg"] = [100.0, 120.0, 90.0]
    for key in ("L", "L_ref"):
        results[key] |= {"wal_bytes_per_msg": [2000.0] * 3, "buffers_per_msg": [50.0] * 3}
    text = table(spreads(results), QUICK)
    assert "| L_ref / L in server CPU per message | 0.50  (the same ratio, steadier on a busy machine) |" in text
    assert (
        "| L per message: server CPU / WAL / buffers | 200 µs (150-400) / 2,000 B (2,000-2,000) / 50 (50-50) |" in text
    )


def test_unknown_measure_and_bad_run_count_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--only", "L", "X"])
    assert "unknown measure(s) X" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--runs", "0"])
    assert "--runs must be at least 1" in capsys.readouterr().err


def test_pickup_latency_splits_into_consecutive_parts_and_counts_early_claims() -> None:
    marks = Marks()
    # Message at t=10: committed 10.002, NOTIFY 10.001, claim 10.0012-10.0022, provider 10.0023.
    marks.committed["10.0"] = 10.002
    marks.notified += [10.001, 20.004]
    marks.claimed["10.0"] = (10.0012, 10.0022)
    marks.called["10.0"] = 10.0023
    # Message at t=20: a claim already under way (a poll) found it before its NOTIFY (20.004).
    marks.committed["20.0"] = 20.003
    marks.claimed["20.0"] = (20.002, 20.005)
    marks.called["20.0"] = 20.006

    figures = split(marks)

    assert (figures["messages"], figures["early"]) == (2, 1)
    assert figures["notify_p50_ms"] == pytest.approx(1.0)
    assert figures["wake_p50_ms"] == pytest.approx(0.2)
    assert figures["claim_p95_ms"] == pytest.approx(3.0)  # the slower of the two round trips
    assert figures["dispatch_p50_ms"] == pytest.approx(0.1, abs=0.9)
    assert figures["max_ms"] == pytest.approx(6.0)  # 20.0 -> 20.006


def test_the_pod_measures_give_their_ratios_and_name_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """B1N against L; B2' against min(K / 0.1 s, what the cores allow), naming what limited it."""
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    cpus = {"cpu_workers": [1.5], "cpu_worker_max": [0.97], "cpu_supervisor": [0.02], "cpu_sandbox": [0.3]}
    cpus |= {"cpu_postgres": [0.1], "cpu_total": [1.92]}
    results = {
        "L": {"msgs_per_s": [6_000.0]},
        "B1N": {
            "msgs_per_s": [4_200.0],
            "processes": [2.0],
            **cpus,
            "cores_allow_msgs_per_s": [4_400.0],
            "limit": [0.0],
        },
        "B2N": {
            "msgs_per_s": [2_000.0],
            "processes": [2.0],
            **cpus,
            "cores_allow_msgs_per_s": [2_400.0],
            "limit": [0.0],
        },
    }
    text = table(spreads(results), QUICK)
    assert "| B1N / L | 0.70  (target >= 0.6) |" in text
    assert "our worker pod, HTTP sandbox at 100 ms, K=1,000, 2 processes | 2,000 msg/s |" in text
    assert "cores allow 2,400 msg/s) | 0.83  (target >= 0.8; limit: the machine's 2 CPUs) |" in text
    results["B2N"] |= {"cpu_total": [0.9], "limit": [2.0]}
    text = table(spreads(results), QUICK)
    assert "limit: the sandbox's CPU (none of the" in text
    results["B2N"]["msgs_per_s"] = [9_000.0]
    assert "limit: the provider's latency (K sends in flight)" in table(spreads(results), QUICK)


@pytest.mark.parametrize("sizes", [FULL, QUICK], ids=["full", "quick"])
def test_every_size_keeps_its_timed_runs_from_running_dry_up_to_the_fastest_rate(sizes: object) -> None:
    # --quick once queued 20,000 messages for 2 s runs: L_ref ran dry at 10,000 msg/s on this machine
    # and the smoke run stopped at its first measure.
    assert sizes.fastest() >= FASTEST  # type: ignore[attr-defined]
