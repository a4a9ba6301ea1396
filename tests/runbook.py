"""The production runbook (shared/runbook.md) as test data: its SQL and PromQL blocks."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

_BLOCK = re.compile(r"```(sql|promql|bash)\n(.*?)```", re.DOTALL)
_PSQL = re.compile(r'psql [^\n]*-c "([^"]+)"')


def runbook_path() -> Path:
    """OUTBOUND_RUNBOOK, else shared/runbook.md beside the checkout (where CI puts it)."""
    override = os.environ.get("OUTBOUND_RUNBOOK")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "shared" / "runbook.md"


def runbook_text() -> str:
    path = runbook_path()
    if not path.exists():
        pytest.fail(f"the runbook contract is missing: {path} (set OUTBOUND_RUNBOOK to its path)")
    return path.read_text()


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--")).strip()


def sql_statements(text: str) -> list[str]:
    """Every SQL statement of every ```sql block, comments removed, in document order."""
    statements = []
    for kind, body in _BLOCK.findall(text):
        parts = body.split(";") if kind == "sql" else []
        if kind == "bash":
            parts = _PSQL.findall(body)
        for part in parts:
            statement = _strip_comments(part)
            if statement:
                statements.append(statement)
    return statements


def promql_expressions(text: str) -> list[str]:
    """Every PromQL expression of every ```promql block (one per non-comment line)."""
    expressions = []
    for kind, body in _BLOCK.findall(text):
        if kind == "promql":
            expressions += [line.strip() for line in body.splitlines() if line.strip() and not line.startswith("#")]
    return expressions
