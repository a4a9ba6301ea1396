"""What each index, trigger and storage setting of outbound_message costs L, measured against L_ref.

    python -m bench.schema_cost [--pairs N] [--seconds S] [--queue Q] [--variants NAME ...]

Each variant is one change applied to a copy of L's prepared database (drop one index, drop a
trigger, a fillfactor...). A pair is L_ref then L on that variant, back to back on fresh copies;
pairs of all the variants are interleaved, round after round, so that a burst of load elsewhere
on the machine falls on every variant alike. What counts is L / L_ref per pair: the table gives
its median and min-max over the pairs, and the load average when the measure ended.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import asyncpg

from bench import common, pgbench_limit, reference
from bench.common import Throughput

BATCH, CLIENTS = 10, 8

# One change each; "as is" is the schema the migrations make. Statements run one by one (VACUUM
# FULL, which rewrites the table so that a new fillfactor applies to every page, cannot run in a
# transaction block).
VARIANTS: dict[str, tuple[str, ...]] = {
    "as is": (),
    # The three indexes as they were before migration 0012.
    "before 0012": (
        "DROP INDEX idx_outbound_message_org_status",
        "CREATE INDEX idx_outbound_message_org_status ON outbound_message (org_id, status, created_at, id)",
        "CREATE INDEX idx_outbound_message_lease ON outbound_message (leased_until) WHERE status = 'SENDING'",
        "DROP INDEX idx_outbound_attempt_provider_created",
        "CREATE INDEX idx_outbound_attempt_provider_created ON outbound_attempt (provider, created_at)",
    ),
    "- org_created": ("DROP INDEX idx_outbound_message_org_created",),
    "- provider_id": ("DROP INDEX idx_outbound_message_provider_id",),
    "- status_created (runbook)": ("DROP INDEX idx_outbound_message_status_created",),
    "- channel_status (runbook)": ("DROP INDEX idx_outbound_message_channel_status",),
    "- both runbook indexes": (
        "DROP INDEX idx_outbound_message_status_created",
        "DROP INDEX idx_outbound_message_channel_status",
    ),
    "- ready trigger": ("DROP TRIGGER outbound_message_ready ON outbound_message",),
    "fillfactor 70": ("ALTER TABLE outbound_message SET (fillfactor = 70)", "VACUUM FULL outbound_message"),
    # The floor the runbook leaves: every index a plain message's lifecycle writes, but the primary
    # keys, the runbook's two named ones and the attempt's (message, attempt) key.
    "only keys + runbook indexes": (
        "DROP INDEX idx_outbound_message_org_created",
        "DROP INDEX idx_outbound_message_provider_id",
    ),
}


# Settings of a database are not copied with it: these are applied to each copy before its run.
PER_COPY: dict[str, tuple[str, ...]] = {
    # Every execution of a prepared statement with the generic plan (no planning per call).
    "generic plans": ("ALTER DATABASE {database} SET plan_cache_mode = force_generic_plan",),
}


def _without(pattern: str, replacement: str = "") -> Callable[[str], str]:
    """A change of L's pgbench script: `pattern` (which must occur) replaced."""

    def change(script: str) -> str:
        changed, count = re.subn(pattern, replacement, script, flags=re.DOTALL)
        if count != 1:
            raise ValueError(f"{pattern!r} occurs {count} times in L's script")
        return changed

    return change


# Changes of the statements rather than the schema, to weigh parts of claim_batch and
# complete_batch (measured only: the worker needs what these drop).
SCRIPT_CHANGES: dict[str, Callable[[str], str]] = {
    "complete without the callback CTE": _without(r"cb AS \( INSERT INTO outbound_callback_outbox .*?\), (?=att AS)"),
    "attempt insert without ON CONFLICT": _without(
        r" ON CONFLICT \(outbound_message_id, attempt_no\) DO UPDATE .*?(?= \) SELECT r\.id)"
    ),
    "claim returning 4 columns": _without(
        r"RETURNING m\.id, m\.org_id, .*?m\.traceparent", "RETURNING m.id, m.lease_id, m.claim_count, m.channel"
    ),
}


async def _apply(dsn: str, statements: Sequence[str]) -> None:
    if not statements:
        return
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()
    await common.vacuum(dsn)


async def measure(
    server: common.Server, variants: dict[str, tuple[str, ...]], *, pairs: int, seconds: float, queue: int
) -> dict[str, list[tuple[Throughput, Throughput]]]:
    """(L_ref, L) of each pair, for each variant."""
    ref_template = await common.create_database(server, migrated=False)
    await reference.prepare(server.dsn(ref_template), queue)
    base = await common.create_database(server)
    await common.load_messages(server.dsn(base), queue)
    await common.vacuum(server.dsn(base))
    templates: dict[str, str] = {}
    results: dict[str, list[tuple[Throughput, Throughput]]] = defaultdict(list)
    try:
        for name, statements in variants.items():
            templates[name] = await common.create_database(server, template=base)
            await _apply(server.dsn(templates[name]), statements)
        for pair in range(1, pairs + 1):
            for name in variants:
                async with common.database(server, template=ref_template) as dsn:
                    ref = (await reference.run(dsn, batch=BATCH, clients=CLIENTS, seconds=seconds)).check("L_ref")
                async with common.database(server, template=templates[name]) as dsn:
                    database = dsn.rsplit("/", 1)[1].split("?")[0]
                    await _apply(dsn, [s.format(database=database) for s in PER_COPY.get(name, ())])
                    script = pgbench_limit.script()
                    if name in SCRIPT_CHANGES:
                        script = SCRIPT_CHANGES[name](script)
                    ours = await common.timed_lifecycle(
                        dsn, "L", script, counts="limit_counts", batch=BATCH, clients=CLIENTS, seconds=seconds
                    )
                    ours.check("L")
                results[name].append((ref, ours))
                print(
                    f"  pair {pair}/{pairs} {name:28} msg/s {ours.msgs_per_s:6,.0f} / {ref.msgs_per_s:6,.0f} "
                    f"= {ours.msgs_per_s / ref.msgs_per_s:.3f}; CPU us/msg {ours.cpu_us_per_msg:5.0f} / "
                    f"{ref.cpu_us_per_msg:5.0f}; WAL B/msg {ours.wal_bytes_per_msg:5.0f} / "
                    f"{ref.wal_bytes_per_msg:5.0f}; buffers/msg {ours.buffers_per_msg:4.0f} / "
                    f"{ref.buffers_per_msg:4.0f}; load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    finally:
        for name in (*templates.values(), base, ref_template):
            await common.drop_database(server, name)
    return results


def _spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def table(results: dict[str, list[tuple[Throughput, Throughput]]]) -> str:
    """Per variant: L / L_ref in msg/s and in CPU per message (L_ref's over ours), medians (min-max)."""
    lines = [
        "| variant | L / L_ref (msg/s) | L_ref CPU / L CPU per message | L CPU µs/msg | L WAL bytes/msg "
        "| L buffers/msg | pairs |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, runs in results.items():
        rates = [ours.msgs_per_s / ref.msgs_per_s for ref, ours in runs]
        cpu = [ref.cpu_us_per_msg / ours.cpu_us_per_msg for ref, ours in runs]
        lines.append(
            f"| {name} | {_spread(rates, '.2f')} | {_spread(cpu, '.2f')} "
            f"| {statistics.median(o.cpu_us_per_msg for _, o in runs):.0f} "
            f"| {statistics.median(o.wal_bytes_per_msg for _, o in runs):,.0f} "
            f"| {statistics.median(o.buffers_per_msg for _, o in runs):.0f} | {len(runs)} |"
        )
    ref_cpu = statistics.median(r.cpu_us_per_msg for runs in results.values() for r, _ in runs)
    ref_wal = statistics.median(r.wal_bytes_per_msg for runs in results.values() for r, _ in runs)
    ref_buffers = statistics.median(r.buffers_per_msg for runs in results.values() for r, _ in runs)
    lines.append(
        f"\nL_ref per message (median): {ref_cpu:.0f} µs of server CPU, {ref_wal:,.0f} bytes of WAL, "
        f"{ref_buffers:.0f} buffers."
    )
    load = os.getloadavg()
    lines.append(f"\nload average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.schema_cost", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=3, help="pairs (L_ref, L) per variant (default 3)")
    parser.add_argument("--seconds", type=float, default=5, help="each timed pgbench run (default 5)")
    parser.add_argument("--queue", type=int, default=200_000, help="messages queued for L and L_ref")
    parser.add_argument("--variants", nargs="+", metavar="NAME", help=f"some variants only: {list(VARIANTS)}")
    args = parser.parse_args(argv)
    unknown = set(args.variants or ()) - set(VARIANTS) - set(PER_COPY) - set(SCRIPT_CHANGES)
    if unknown:
        parser.error(f"unknown variant(s) {sorted(unknown)}; choose from {[*VARIANTS, *PER_COPY, *SCRIPT_CHANGES]}")
    known = VARIANTS | dict.fromkeys([*PER_COPY, *SCRIPT_CHANGES], ())
    chosen = {name: known[name] for name in args.variants} if args.variants else known
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    with common.postgres(Path(tempfile.mkdtemp(prefix="outbound-schema-cost-"))) as server:
        results = asyncio.run(measure(server, chosen, pairs=args.pairs, seconds=args.seconds, queue=args.queue))
    print("\n" + table(results))


if __name__ == "__main__":
    main()
