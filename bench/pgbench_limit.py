"""L: the database's limit for our own claim + complete statements, driven by pgbench.

The script is generated from the worker's named SQL (claim_batch, complete_batch), so it measures
exactly what the worker runs: claim 10 messages, then record all 10 as sent, 8 clients. The figure
is the attempt rows written over the run's wall-clock time, not pgbench's tps x batch: a claim that
comes back short (or empty, near the end of the queue) must not count as a full batch.
"""

from __future__ import annotations

import re

from bench.common import Throughput, timed_lifecycle
from outbound_sender.store.queries import sql

CLAIM_PARAMS = {
    "$1::text[]": "'{SMS,EMAIL,WHATSAPP}'::text[]",
    "$2": ":batch",
    "$3": "'pgbench'",
    "$4::float8": "30::float8",
}

COMPLETE_PARAMS = {
    1: ":ids::bigint[]",
    2: ":leases::uuid[]",
    3: ":nos::int[]",
    4: "array_fill('SENT'::text, ARRAY[:n::int])",
    7: "array_fill('pgbench'::text, ARRAY[:n::int])",
    10: "array_fill('pm'::text, ARRAY[:n::int])",
    11: "array_fill(201, ARRAY[:n::int])",
    12: "array_fill(1, ARRAY[:n::int])",
    13: "array_fill(NULL::bigint, ARRAY[:n::int])",
    14: "array_fill(false, ARRAY[:n::int])",
    15: ":chans::text[]",
}


def _claim() -> str:
    statement = sql("claim_batch").rstrip(";")
    for placeholder, value in CLAIM_PARAMS.items():
        statement = statement.replace(placeholder, value)
    # An empty claim must give empty arrays (array_agg of no rows is NULL, which \\gset would pass
    # on as an empty string and the complete statement would reject), so the round does nothing.
    return (
        f"WITH c AS ({statement})\n"
        "SELECT coalesce(array_agg(id), '{}') AS ids, coalesce(array_agg(lease_id), '{}') AS leases,\n"
        "       coalesce(array_agg(claim_count), '{}') AS nos, coalesce(array_agg(channel), '{}') AS chans,\n"
        "       count(*) AS n FROM c"
    )


def _complete() -> str:
    def replace(match: re.Match[str]) -> str:
        number = int(match[1])
        return COMPLETE_PARAMS.get(number, "array_fill(NULL::text, ARRAY[:n::int])")

    statement = re.sub(r"\$(\d+)::\w+\[\]", replace, sql("complete_batch").rstrip(";"))
    return statement.replace("$16", "'pgbench'")


def _one_line(text: str) -> str:
    """pgbench reads one statement per line: drop comments, join lines."""
    return " ".join(line.split("--")[0].strip() for line in text.splitlines()).strip()


def script() -> str:
    """The pgbench script (:batch given by the caller): claim, \\gset, complete; two transactions."""
    return f"{_one_line(_claim())}\n\\gset\n{_one_line(_complete())};\n"


async def run(dsn: str, *, batch: int = 10, clients: int = 8, seconds: float = 10) -> Throughput:
    """Run claim + complete for `seconds` on a database of queued messages; what it completed."""
    return await timed_lifecycle(
        dsn, "L", script(), counts="limit_counts", batch=batch, clients=clients, seconds=seconds
    )
