"""Run every benchmark on one PostgreSQL server, side by side, and print the table.

    python -m bench [--quick] [--runs N] [--only KEY ...]

Each measure runs N times (default 3), interleaved: L_ref, L, P, B1, B1N, B2, B2P, http, B2N, M, B3, the latency
yardsticks, the API and the soak S, then again from the start. Every run gets a fresh database (the
large tables of L, L_ref and S are loaded once, vacuumed, and copied for each run). The table gives the
median and the min-max range of each figure; the ratios are taken between medians. The absolute
figures belong to this machine at this moment; the ratios, measured in one run, are what the
targets are about.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import tempfile
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from bench import (
    api_bench,
    common,
    http_yardstick,
    pgbench_limit,
    pgqueuer_bench,
    pickup,
    pod_bench,
    reference,
    soak,
    worker_bench,
)
from bench.common import Spread
from outbound_sender.worker.cpus import default_processes

RESULTS = Path(__file__).parent / "results"
BATCH, CLIENTS = 10, 8
B2_K = 200
B2_TARGET = 0.9 * B2_K / 0.1  # msg/s: 90 % of what K = 200 sends in flight allow at 100 ms each
B2N_K = pod_bench.K_WIDE  # B2': K = 1,000 over one pod of N worker processes


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work each measure gets. Timed runs (L, L_ref) are sized for a machine several times
    faster than the development one, and fail loudly if their queue still comes near empty."""

    seconds: float  # each timed pgbench run (L, L_ref)
    queue: int  # messages queued for L and for L_ref
    drain: int  # messages drained by P and B1
    b2: int  # messages sent by B2 (K = 200)
    b2n: int  # messages sent by B2' (K = 1,000, N processes)
    memory: int  # messages sent by M (K = 1,000)
    latency_seconds: float  # B3 and its yardsticks, at RATE messages/s
    soak_total: int  # messages in the soak's table (S), most of them SENT
    soak_drain: int  # of which QUEUED, drained at full speed
    api: api_bench.Sizes
    runs: int

    def fastest(self) -> float:
        """The highest L or L_ref rate (msg/s) whose run still ends with its margin of queue left."""
        return self.queue * (1 - common.MIN_LEFT_SHARE) / self.seconds


FULL = Sizes(
    seconds=10,
    queue=600_000,
    drain=50_000,
    b2=10_000,
    b2n=30_000,
    memory=20_000,
    latency_seconds=10,
    soak_total=1_000_000,
    soak_drain=200_000,
    api=api_bench.Sizes(single=4000, batches=100),
    runs=3,
)
QUICK = Sizes(  # short, not small: its L and L_ref must not run dry either
    seconds=1,
    queue=60_000,
    drain=2_000,
    b2=1_000,
    b2n=3_000,
    memory=2_000,
    latency_seconds=2,
    soak_total=100_000,
    soak_drain=40_000,  # a tenth takes several samples of the soak's 50 ms
    api=api_bench.Sizes(single=400, batches=10),
    runs=3,
)
RATE = 50.0
FASTEST = 54_000  # msg/s: L and L_ref on a machine several times this one's (about 13,000 here)

Measure = Callable[[str], Awaitable[dict[str, float]]]
Results = dict[str, dict[str, list[float]]]


async def _limit(dsn: str, sizes: Sizes) -> dict[str, float]:
    done = await pgbench_limit.run(dsn, batch=BATCH, clients=CLIENTS, seconds=sizes.seconds)
    return done.check("L").metrics()


async def _reference(dsn: str, sizes: Sizes) -> dict[str, float]:
    done = await reference.run(dsn, batch=BATCH, clients=CLIENTS, seconds=sizes.seconds)
    return done.check("L_ref").metrics()


async def _templates(server: common.Server, sizes: Sizes, only: Sequence[str]) -> dict[str, str]:
    """Prepared databases for L_ref, L and S (loaded and vacuumed once), to copy per run."""
    names: dict[str, str] = {}
    preparers: tuple[tuple[str, int, Callable[[str], Awaitable[None]], bool], ...] = (
        ("L_ref", sizes.queue, lambda dsn: reference.prepare(dsn, sizes.queue), False),
        ("L", sizes.queue, lambda dsn: _load_queue(dsn, sizes.queue), True),
        ("S", sizes.soak_total, lambda dsn: soak.prepare(dsn, sizes.soak_total, sizes.soak_drain), True),
    )
    for key, count, prepare, migrated in preparers:
        if only and key not in only:
            continue
        print(f"  loading {count:,} messages for {key} ...", flush=True)
        names[key] = await common.create_database(server, migrated=migrated)
        await prepare(server.dsn(names[key]))
    return names


async def _b1n(dsn: str, count: int) -> dict[str, float]:
    """B1 through one pod of N processes: batch 10 and 50 sends in flight per process, as B1."""
    n = default_processes()
    return await pod_bench.pod_drain(dsn, count, kind="null", processes=n, in_flight=50 * n, batch=BATCH)


async def _b2n(dsn: str, count: int) -> dict[str, float]:
    return await pod_bench.pod_drain(dsn, count, kind="generic", in_flight=B2N_K)


async def _b2p(dsn: str, count: int) -> dict[str, float]:
    """B2's K = 200 sends in flight over one pod of N processes (K / N each), claiming the worker's
    default batch of 10: a batch of 50 would leave up to half of a process's 100 sends idle while
    it waits for room for the next batch."""
    return await pod_bench.pod_drain(dsn, count, kind="generic", in_flight=B2_K, batch=BATCH)


async def _http(count: int) -> dict[str, float]:
    """The HTTP stack alone at B2pod's load: as many client processes as its worker processes."""
    n = default_processes()
    figures = await http_yardstick.run(count, in_flight=B2_K, latency_ms=pod_bench.LATENCY_MS, processes=n)
    return figures | {"processes": float(n)}


async def _load_queue(dsn: str, count: int) -> None:
    await common.load_messages(dsn, count)
    await common.vacuum(dsn)


KEYS = ("L_ref", "L", "P", "B1", "B1N", "B2", "B2P", "http", "B2N", "M", "B3", "P_lat", "floor", "commit", "api", "S")


def plan(sizes: Sizes, templates: dict[str, str]) -> list[tuple[str, str, str | None, bool, Measure]]:
    """(key, label, template, migrated, measure) in the order of one round."""
    seconds = sizes.latency_seconds
    return [
        ("L_ref", "L_ref (reference lifecycle)", templates.get("L_ref"), False, lambda d: _reference(d, sizes)),
        ("L", "L (our claim + complete)", templates.get("L"), True, lambda d: _limit(d, sizes)),
        ("P", "P (PGQueuer drain, 5 dequeuers)", None, True, lambda d: pgqueuer_bench.drain(d, sizes.drain)),
        ("B1", "B1 (worker, null provider)", None, True, lambda d: worker_bench.b1_null_provider(d, sizes.drain)),
        ("B1N", "B1N (worker pod, N processes, null provider)", None, True, lambda d: _b1n(d, sizes.drain)),
        ("B2", "B2 (worker, sandbox 100 ms, K=200)", None, True, lambda d: worker_bench.b2_http_sandbox(d, sizes.b2)),
        ("B2P", "B2 pod (worker pod, N processes, sandbox 100 ms, K=200)", None, True, lambda d: _b2p(d, sizes.b2n)),
        (
            "http",
            "B2 yardstick (the provider client alone, N processes, K=200)",
            None,
            False,
            lambda d: _http(sizes.b2n),
        ),
        ("B2N", "B2' (worker pod, N processes, sandbox 100 ms, K=1,000)", None, True, lambda d: _b2n(d, sizes.b2n)),
        (
            "M",
            "M (worker process, K=1,000)",
            None,
            True,
            lambda d: worker_bench.memory_at_k(d, sizes.memory, worker_bench.MEMORY_K),
        ),
        ("B3", "B3 (enqueue -> call latency)", None, True, lambda d: pickup.b3_latency(d, RATE, seconds)),
        ("P_lat", "PGQueuer latency", None, True, lambda d: pgqueuer_bench.latency(d, RATE, seconds)),
        ("floor", "LISTEN/NOTIFY floor", None, True, lambda d: worker_bench.notify_floor(d, RATE, seconds)),
        ("commit", "durable commit floor", None, False, lambda d: pickup.commit_floor(d, RATE, seconds)),
        ("api", "HTTP API and the database limit", None, True, lambda d: api_bench.run(d, sizes.api)),
        (
            "S",
            f"S (soak: drain {sizes.soak_drain:,} of {sizes.soak_total:,} messages)",
            templates.get("S"),
            True,
            lambda d: soak.run(d, sizes.soak_drain),
        ),
    ]


async def measure(server: common.Server, sizes: Sizes, only: Sequence[str] = ()) -> Results:
    results: Results = defaultdict(lambda: defaultdict(list))
    templates = await _templates(server, sizes, only)
    try:
        for run in range(1, sizes.runs + 1):
            for key, label, template, migrated, fn in plan(sizes, templates):
                if only and key not in only:
                    continue
                print(f"  run {run}/{sizes.runs}: {label} ...", flush=True)
                async with common.database(server, migrated=migrated, template=template) as dsn:
                    for metric, value in (await fn(dsn)).items():
                        results[key][metric].append(value)
    finally:
        for name in templates.values():
            await common.drop_database(server, name)
    return results


def spreads(results: Results) -> dict[str, dict[str, Spread]]:
    return {key: {m: Spread(tuple(v)) for m, v in metrics.items()} for key, metrics in results.items()}


Figures = dict[str, dict[str, Spread]]
Rows = list[tuple[str, str]]


def table(s: Figures, sizes: Sizes) -> str:
    """The Markdown table docs/performance.md holds: median (min-max) of each figure, ratios of medians."""
    rows = _throughput_rows(s) + _latency_rows(s) + _ratio_rows(s)
    if "api" in s:
        rows += _api_rows(s["api"])
    if "S" in s:
        rows += _soak_rows(s["S"], sizes)
    lines = [
        f"{sizes.runs} runs per measure, interleaved; median (min-max); ratios between medians.",
        "",
        "| measurement | result |",
        "| --- | --- |",
    ]
    lines += [f"| {label.strip()} | {value} |" for label, value in rows]
    return "\n".join(lines)


def _rate(s: Figures, key: str, label: str) -> Rows:
    return [(label, s[key]["msgs_per_s"].text(unit=" msg/s"))] if key in s else []


def _throughput_rows(s: Figures) -> Rows:
    rows = _rate(s, "L_ref", f"L_ref reference lifecycle, pgbench, batch {BATCH}, {CLIENTS} clients")
    rows += _rate(s, "L", f"L     our claim_batch + complete_batch, pgbench, batch {BATCH}, {CLIENTS} clients")
    for key in ("L_ref", "L"):
        if key in s and "cpu_us_per_msg" in s[key]:
            cost = s[key]
            rows.append(
                (
                    f"      {key} per message: server CPU / WAL / buffers",
                    f"{cost['cpu_us_per_msg'].text(unit=' µs')} / {cost['wal_bytes_per_msg'].text(unit=' B')} / "
                    f"{cost['buffers_per_msg'].text()}",
                )
            )
    rows += _rate(s, "P", f"P     PGQueuer drain, {pgqueuer_bench.DEQUEUERS} dequeuers, batch {BATCH}")
    rows += _rate(s, "B1", f"B1    our worker, null provider, 1 process, batch {BATCH}")
    rows += _rate(s, "B2", "B2    our worker, HTTP sandbox at 100 ms, K=200")
    if "B2" in s:
        rows.append(("      B2 peak database connections (target <= 3)", s["B2"]["db_connections"].text()))
    rows += _pod_rows(s)
    if "http" in s:
        h = s["http"]
        label = (
            f"      B2 yardstick: the provider client alone, {h['processes'].median:.0f} processes, K=200 (mean call)"
        )
        rows.append((label, f"{h['msgs_per_s'].text(unit=' msg/s')} ({h['mean_ms'].text('.1f', ' ms')})"))
    if "M" in s:
        m = s["M"]
        rows.append(("M     worker process at K=1,000, sandbox 100 ms: peak RSS", m["rss_mb"].text(unit=" MB")))
        reached = "" if m["peak_in_flight"].median >= 0.9 * worker_bench.MEMORY_K else "  (K not reached)"
        rows.append(
            ("      M peak in flight / processes", f"{m['peak_in_flight'].text()}{reached} / {m['processes'].text()}")
        )
    return rows


def _latency_rows(s: Figures) -> Rows:
    rows: Rows = []
    for key, label in (
        ("B3", "B3    enqueue -> provider call"),
        ("P_lat", "      PGQueuer enqueue -> entrypoint"),
        ("floor", "      raw LISTEN/NOTIFY floor"),
        ("commit", "      one-row INSERT, committed (WAL flush)"),
    ):
        if key in s:
            lat = s[key]
            rows.append((f"{label} p50 / p95 / max", " / ".join(lat[p].text(".1f", " ms") for p in _LAT)))
        if key == "B3" and "claim_p50_ms" in s.get(key, {}):
            rows += _pickup_rows(s[key])
    return rows


def _pickup_rows(b3: dict[str, Spread]) -> Rows:
    """B3's parts (bench/pickup.py), p50 / p95 each."""
    rows: Rows = []
    for part, label in (
        ("commit", "enqueue called -> committed (overlaps notify)"),
        ("notify", "enqueue called -> worker's NOTIFY callback"),
        ("wake", "NOTIFY callback -> claim sent"),
        ("claim", "claim round trip"),
        ("dispatch", "claim returned -> provider called"),
    ):
        value = " / ".join(b3[f"{part}_{p}"].text(".2f", " ms") for p in ("p50_ms", "p95_ms"))
        rows.append((f"      B3 part: {label}, p50 / p95", value))
    early = f"{b3['early'].text()} of {b3['messages'].text()}"
    rows.append(("      B3 messages claimed before their NOTIFY arrived", early))
    return rows


def _ratio(s: Figures, label: str, top: tuple[str, str], bottom: tuple[str, str], target: str) -> Rows:
    if top[1] in s.get(top[0], {}) and bottom[1] in s.get(bottom[0], {}):
        value = s[top[0]][top[1]].median / s[bottom[0]][bottom[1]].median
        return [(label, f"{value:.2f}  ({target})")]
    return []


def _ratio_rows(s: Figures) -> Rows:
    rows = _ratio(s, "L / L_ref", ("L", "msgs_per_s"), ("L_ref", "msgs_per_s"), "target >= 0.85, goal 1.0")
    rows += _ratio(
        s,
        "L_ref / L in server CPU per message",
        ("L_ref", "cpu_us_per_msg"),
        ("L", "cpu_us_per_msg"),
        "the same ratio, steadier on a busy machine",
    )
    rows += _ratio(s, "B1 / P", ("B1", "msgs_per_s"), ("P", "msgs_per_s"), "target >= 1.0")
    rows += _ratio(s, "B1 / L", ("B1", "msgs_per_s"), ("L", "msgs_per_s"), "goal 0.5")
    if "B2" in s:
        rows.append(("B2 / (0.9 x K / 0.1 s)", f"{s['B2']['msgs_per_s'].median / B2_TARGET:.2f}  (target >= 1.0)"))
    if "B2P" in s:
        pod = s["B2P"]["msgs_per_s"].median / B2_TARGET
        rows.append(("B2pod / (0.9 x K / 0.1 s)", f"{pod:.2f}  (target >= 1.0, K = 200 over the pod's processes)"))
    if "http" in s:
        ceiling = s["http"]["msgs_per_s"].median / B2_TARGET
        rows.append(("B2 yardstick / (0.9 x K / 0.1 s)", f"{ceiling:.2f}  (the HTTP stack alone: B2's ceiling here)"))
    rows += _ratio(s, "B1N / L", ("B1N", "msgs_per_s"), ("L", "msgs_per_s"), "target >= 0.6")
    if "B2N" in s:
        rows.append(_b2n_ratio(s["B2N"]))
    rows += _ratio(s, "B3 p95 / PGQueuer p95", ("B3", "p95_ms"), ("P_lat", "p95_ms"), "target <= 1.0")
    if "p95_ms" in s.get("B3", {}) and "p95_ms" in s.get("P_lat", {}):
        pairs = zip(s["B3"]["p95_ms"].values, s["P_lat"]["p95_ms"].values, strict=True)
        worst = max(ours / theirs for ours, theirs in pairs)
        rows.append(("B3 p95 / PGQueuer p95, worst run", f"{worst:.2f}  (target <= 1.0 in every run)"))
    rows += _ratio(s, "B3 p95 / floor p95", ("B3", "p95_ms"), ("floor", "p95_ms"), "goal <= 2.0")
    return rows


_LAT = ("p50_ms", "p95_ms", "max_ms")


def _pod_rows(s: Figures) -> Rows:
    rows: Rows = []
    for key, name, label in (
        ("B1N", "B1N", "our worker pod, null provider, batch 10"),
        ("B2P", "B2pod", "our worker pod, HTTP sandbox at 100 ms, K=200"),
        ("B2N", "B2'", "our worker pod, HTTP sandbox at 100 ms, K=1,000"),
    ):
        if key in s:
            f = s[key]
            processes = f"{f['processes'].median:.0f} processes"
            rows.append((f"{name:<5} {label}, {processes}", f["msgs_per_s"].text(unit=" msg/s")))
            cpus = " / ".join(f[figure].text(".2f") for figure in CPU_FIGURES)
            parts = "worker processes / the busiest one / supervisor / sandbox / PostgreSQL / all"
            rows.append((f"{name} CPUs used: {parts}", cpus))
    return rows


CPU_FIGURES = ("cpu_workers", "cpu_worker_max", "cpu_supervisor", "cpu_sandbox", "cpu_postgres", "cpu_total")


def _b2n_ratio(f: dict[str, Spread]) -> tuple[str, str]:
    """B2' against min(K / 0.1 s, what the machine's cores allow at the CPU cost per message measured),
    with the resource that limited it."""
    latency_bound = B2N_K / (pod_bench.LATENCY_MS / 1000)
    cores_bound = f["cores_allow_msgs_per_s"].median
    bound = min(latency_bound, cores_bound)
    value = f["msgs_per_s"].median / bound
    return (
        f"B2' / min(K / 0.1 s = {latency_bound:,.0f}, cores allow {cores_bound:,.0f} msg/s)",
        f"{value:.2f}  (target >= 0.8; limit: {_b2n_limit(f, latency_bound)})",
    )


def _b2n_limit(f: dict[str, Spread], latency_bound: float) -> str:
    cores = os.cpu_count() or 1
    if f["msgs_per_s"].median >= 0.8 * latency_bound:
        return "the provider's latency (K sends in flight)"
    if f["cpu_total"].median >= 0.85 * cores:
        return f"the machine's {cores} CPUs"
    busiest = pod_bench.LIMITS[int(f["limit"].median)]
    return f"{busiest} (none of the {cores} CPUs saturated: other load on the machine?)"


def _soak_rows(soak_figures: dict[str, Spread], sizes: Sizes) -> list[tuple[str, str]]:
    f = soak_figures
    return [
        (
            f"S     soak, drain {sizes.soak_drain:,} of {sizes.soak_total:,}: first / last 10 %",
            f"{f['first_msgs_per_s'].text(unit=' msg/s')} / {f['last_msgs_per_s'].text(unit=' msg/s')}",
        ),
        ("S last 10 % / first 10 %", f"{f['last_over_first'].text('.2f')}  (target >= 0.9)"),
        (
            "      S outbound_message dead tuples before -> after (vacuums during the drain)",
            f"{f['dead_before'].text()} -> {f['dead_after'].text()} ({f['vacuums_during'].text()})",
        ),
        (
            "      S outbound_message table / indexes, MB before -> after",
            f"{f['table_mb_before'].text()} -> {f['table_mb_after'].text()} / "
            f"{f['index_mb_before'].text()} -> {f['index_mb_after'].text()}",
        ),
        (
            "      S outbound_attempt with indexes, MB before -> after",
            f"{f['attempt_mb_before'].text()} -> {f['attempt_mb_after'].text()}",
        ),
    ]


def _api_rows(api: dict[str, Spread]) -> list[tuple[str, str]]:
    lifecycle = api["db_lifecycle_msgs_per_s"].median
    return [
        (
            "API create, single endpoint (p50 / p99)",
            f"{api['api_single_msgs_per_s'].text(unit=' msg/s')} "
            f"({api['api_single_p50_ms'].text('.0f')} / {api['api_single_p99_ms'].text('.0f')} ms)",
        ),
        ("API create, batch endpoint", api["api_batch_msgs_per_s"].text(unit=" msg/s")),
        ("DB limit: enqueue single", api["db_enqueue_single_msgs_per_s"].text(unit=" msg/s")),
        ("DB limit: enqueue batch", api["db_enqueue_batch_msgs_per_s"].text(unit=" msg/s")),
        ("DB limit: enqueue + claim + complete", api["db_lifecycle_msgs_per_s"].text(unit=" msg/s")),
        ("API single / DB lifecycle", f"{api['api_single_msgs_per_s'].median / lifecycle:.2f}"),
        ("API batch / DB lifecycle", f"{api['api_batch_msgs_per_s'].median / lifecycle:.2f}"),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs on small queues (a smoke test)")
    parser.add_argument("--runs", type=int, help="runs per measure (default 3)")
    parser.add_argument("--only", nargs="+", metavar="KEY", help=f"only these measures: {' '.join(KEYS)}")
    args = parser.parse_args(argv)
    unknown = set(args.only or ()) - set(KEYS)
    if unknown:
        parser.error(f"unknown measure(s) {', '.join(sorted(unknown))}; choose from {' '.join(KEYS)}")
    sizes = QUICK if args.quick else FULL
    if args.runs is not None:
        if args.runs < 1:
            parser.error("--runs must be at least 1")
        sizes = dataclasses.replace(sizes, runs=args.runs)
    with common.postgres(Path(tempfile.mkdtemp(prefix="outbound-bench-"))) as server:
        results = asyncio.run(measure(server, sizes, args.only or ()))
    text = table(spreads(results), sizes)
    print("\n" + text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
