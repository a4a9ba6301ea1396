"""Every named SQL statement of the sender and the operator is referenced by their code.

A statement is looked up by name (`sql("claim_batch")`), so an unused one is a `-- name:` whose name
appears as a string in no module of the package that loads it. Unused SQL is dead code that still
looks maintained: a schema change would be checked against it, an EXPLAIN test could be written
for it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from outbound_sender.store.queries import parse

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "sender": ROOT / "sender" / "outbound_sender",
    "operator": ROOT / "operator" / "outbound_operator",
}


def string_constants(package: Path) -> set[str]:
    found: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return found


def named_statements(package: Path) -> dict[str, Path]:
    return {name: path for path in sorted(package.rglob("*.sql")) for name in parse(path.read_text())}


@pytest.mark.parametrize("side", sorted(PACKAGES))
def test_every_named_statement_is_referenced(side: str) -> None:
    package = PACKAGES[side]
    statements = named_statements(package)
    assert statements, f"no named SQL found under {package}"
    used = string_constants(package)
    unused = sorted(f"{path.relative_to(ROOT)}: {name}" for name, path in statements.items() if name not in used)
    assert not unused, f"named SQL that no code of the {side} refers to (remove it): {unused}"
