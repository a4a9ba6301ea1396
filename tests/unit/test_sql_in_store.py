"""Only the store runs SQL: no module of the sender outside store/ loads a named statement or calls
a driver's query methods, so every statement is found, indexed and faked in one place."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SENDER = ROOT / "sender" / "outbound_sender"
STORE = SENDER / "store"
QUERY_METHODS = frozenset({"fetch", "fetchrow", "fetchval", "execute", "executemany", "copy_records_to_table"})


def sql_outside_the_store(path: Path) -> list[str]:
    """`file:line what` for each import of the SQL loader and each driver query call in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == "outbound_sender.store.queries":
            found.append(f"{path.name}:{node.lineno} imports the SQL loader")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in QUERY_METHODS:
            found.append(f"{path.name}:{node.lineno} calls .{node.func.attr}()")
    return found


def test_no_module_outside_the_store_runs_sql() -> None:
    modules = [path for path in sorted(SENDER.rglob("*.py")) if STORE not in path.parents]
    found = [hit for path in modules for hit in sql_outside_the_store(path)]
    assert not found, "move these statements into store/:\n" + "\n".join(found)


def test_the_check_sees_sql(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from outbound_sender.store.queries import sql\n\nasync def f(pool):\n    await pool.fetch(sql('x'))\n"
    )
    assert sql_outside_the_store(sample) == ["sample.py:1 imports the SQL loader", "sample.py:4 calls .fetch()"]
