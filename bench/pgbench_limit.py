"""L: the database's limit for our own claim + complete statements, driven by pgbench.

The script is generated from the worker's named SQL (claim_batch, complete_batch), so it measures
exactly what the worker runs: claim 10 messages, then record all 10 as sent, 8 clients.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from outbound_sender.embedded import pg_bin_dir
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
    return (
        f"WITH c AS ({statement})\n"
        "SELECT array_agg(id) AS ids, array_agg(lease_id) AS leases, array_agg(claim_count) AS nos,\n"
        "       array_agg(channel) AS chans, count(*) AS n FROM c"
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


def script(batch: int) -> str:
    one_line = _one_line
    return f"\\set batch {batch}\n{one_line(_claim())}\n\\gset\n{one_line(_complete())};\n"


def run(dsn: str, *, batch: int = 10, clients: int = 8, seconds: int = 10) -> float:
    """Messages per second (claimed and completed) at the database's limit."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "claim_complete.sql"
        path.write_text(script(batch))
        command = [str(pg_bin_dir() / "pgbench"), "-n", "-M", "prepared", "-c", str(clients), "-j", "2"]
        command += ["-T", str(seconds), "-f", str(path), dsn]
        done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed: {done.stderr[-2000:]}")
    output = done.stdout
    tps = float(re.search(r"tps = ([\d.]+)", output)[1])  # type: ignore[index]
    return tps * batch
