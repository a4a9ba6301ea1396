"""Run every benchmark on one PostgreSQL server, side by side, and print the table.

    python -m bench [--quick]

Each measurement gets a fresh database and a VACUUM ANALYZE before it starts. The figures are
absolute numbers for this machine at this moment; the ratios are what the targets are about.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import api_bench, common, pgbench_limit, pgqueuer_bench, worker_bench

RESULTS = Path(__file__).parent / "results"


async def _measure(server: common.Server, label: str, fn: Callable[[str], Awaitable[Any]]) -> Any:
    print(f"  measuring {label} ...", flush=True)
    async with common.database(server) as dsn:
        return await fn(dsn)


async def _limit(dsn: str, messages: int, seconds: int) -> float:
    await common.load_messages(dsn, messages)
    await common.vacuum(dsn)
    return pgbench_limit.run(dsn, batch=10, clients=8, seconds=seconds)


async def measure(server: common.Server, quick: bool) -> dict[str, Any]:
    n = 5_000 if quick else 20_000
    rate, seconds = 50.0, (4.0 if quick else 10.0)
    r: dict[str, Any] = {}
    r["L"] = await _measure(server, "L (pgbench claim+complete)", lambda d: _limit(d, 6 * n, 5 if quick else 10))
    r["P"] = await _measure(server, "P (PGQueuer drain)", lambda d: pgqueuer_bench.drain(d, n))
    r["B1"] = await _measure(server, "B1 (worker, null provider)", lambda d: worker_bench.b1_null_provider(d, n))
    r["B2"] = await _measure(
        server, "B2 (worker, HTTP sandbox 100 ms, K=200)", lambda d: worker_bench.b2_http_sandbox(d, n // 2)
    )
    r["B3"] = await _measure(server, "B3 (enqueue->call latency)", lambda d: worker_bench.b3_latency(d, rate, seconds))
    r["P_lat"] = await _measure(server, "PGQueuer latency", lambda d: pgqueuer_bench.latency(d, rate, seconds))
    r["floor"] = await _measure(server, "LISTEN/NOTIFY floor", lambda d: worker_bench.notify_floor(d, rate, seconds))
    r["api"] = await _measure(server, "HTTP API create (single, batch) and the database limit", api_bench.run)
    return r


def table(r: dict[str, Any]) -> str:
    b2 = r["B2"]
    rows = [
        ("L   pgbench: our claim+complete, batch 10, 8 clients", f"{r['L']:,.0f} msg/s"),
        ("P   PGQueuer drain of no-op jobs, batch 10", f"{r['P']:,.0f} msg/s"),
        ("B1  our worker, null provider, 1 process, batch 10", f"{r['B1']:,.0f} msg/s"),
        ("B2  our worker, HTTP sandbox at 100 ms, K=200", f"{b2['msgs_per_s']:,.0f} msg/s"),
        ("    B2 target 0.9 x K / 0.1 s", f"{0.9 * 200 / 0.1:,.0f} msg/s"),
        ("    B2 peak database connections (target <= 3)", f"{b2['db_connections']:.0f}"),
        ("B3  enqueue -> provider call p50 / p95 / max", _lat(r["B3"])),
        ("    PGQueuer enqueue -> entrypoint p50 / p95 / max", _lat(r["P_lat"])),
        ("    raw LISTEN/NOTIFY floor p50 / p95 / max", _lat(r["floor"])),
        ("B1 / L", f"{r['B1'] / r['L']:.2f}  (goal 0.5)"),
        ("B1 / P", f"{r['B1'] / r['P']:.2f}  (target >= 1.0)"),
        ("B3 p95 / PGQueuer p95", f"{r['B3']['p95_ms'] / r['P_lat']['p95_ms']:.2f}  (target <= 1.0)"),
        ("B3 p95 / floor p95", f"{r['B3']['p95_ms'] / r['floor']['p95_ms']:.2f}  (goal <= 2.0)"),
        *_api_rows(r["api"]),
    ]
    width = max(len(label) for label, _ in rows)
    lines = ["| measurement | result |", "| --- | --- |"]
    lines += [f"| {label.strip():<{width}} | {value} |" for label, value in rows]
    return "\n".join(lines)


def _api_rows(api: dict[str, float]) -> list[tuple[str, str]]:
    lifecycle = api["db_lifecycle_msgs_per_s"]
    return [
        (
            "API create, single endpoint (p50 / p99)",
            f"{api['api_single_msgs_per_s']:,.0f} msg/s "
            f"({api['api_single_p50_ms']:.0f} / {api['api_single_p99_ms']:.0f} ms)",
        ),
        ("API create, batch endpoint", f"{api['api_batch_msgs_per_s']:,.0f} msg/s"),
        (
            "DB limit: enqueue single / batch",
            f"{api['db_enqueue_single_msgs_per_s']:,.0f} / {api['db_enqueue_batch_msgs_per_s']:,.0f} msg/s",
        ),
        ("DB limit: enqueue + claim + complete", f"{lifecycle:,.0f} msg/s"),
        ("API single / DB lifecycle", f"{api['api_single_msgs_per_s'] / lifecycle:.2f}"),
        ("API batch / DB lifecycle", f"{api['api_batch_msgs_per_s'] / lifecycle:.2f}"),
    ]


def _lat(summary: dict[str, float]) -> str:
    return f"{summary['p50_ms']:.1f} / {summary['p95_ms']:.1f} / {summary['max_ms']:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the benchmarks)")
    args = parser.parse_args()
    with common.postgres(Path(tempfile.mkdtemp(prefix="outbound-bench-"))) as server:
        results = asyncio.run(measure(server, args.quick))
    text = table(results)
    print("\n" + text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
