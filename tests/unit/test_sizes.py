"""Size limits that keep the code readable in one sitting: no function of the sender, the operator,
the benchmarks or the build scripts longer than 60 lines, no module of the worker's units longer than 150 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [ROOT / "sender" / "outbound_sender", ROOT / "operator" / "outbound_operator", ROOT / "bench", ROOT / "hack"]
WORKER = ROOT / "sender" / "outbound_sender" / "worker"
MAX_FUNCTION_LINES = 60
MAX_WORKER_MODULE_LINES = 150


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES, base: Path = ROOT) -> list[str]:
    """`file:line name (n lines)` for each function or method of `path` longer than `limit` lines
    (from its `def`, or its first decorator, to its last line)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            lines = (node.end_lineno or node.lineno) - first + 1
            if lines > limit:
                found.append(f"{path.relative_to(base)}:{first} {node.name} ({lines} lines)")
    return found


def long_modules(folder: Path, limit: int = MAX_WORKER_MODULE_LINES, base: Path = ROOT) -> list[str]:
    counts = {path: len(path.read_text().splitlines()) for path in sorted(folder.rglob("*.py"))}
    return [f"{path.relative_to(base)} ({n} lines)" for path, n in counts.items() if n > limit]


def test_no_function_is_longer_than_60_lines() -> None:
    found = [hit for package in PACKAGES for path in sorted(package.rglob("*.py")) for hit in long_functions(path)]
    assert not found, "split these functions:\n" + "\n".join(found)


def test_no_module_of_the_worker_is_longer_than_150_lines() -> None:
    found = long_modules(WORKER)
    assert not found, "split these modules of the worker:\n" + "\n".join(found)


def test_the_limits_see_what_they_limit(tmp_path: Path) -> None:
    """Guard against a check that cannot fail: a long function and a long module are found."""
    body = "\n".join(f"    x{n} = {n}" for n in range(60))
    sample = tmp_path / "sample.py"
    sample.write_text(f"@staticmethod\ndef long() -> None:\n{body}\n\n\ndef short() -> None:\n    pass\n")
    assert long_functions(sample, base=tmp_path) == ["sample.py:1 long (62 lines)"]
    assert long_functions(sample, limit=62, base=tmp_path) == []
    assert long_modules(tmp_path, limit=65, base=tmp_path) == ["sample.py (66 lines)"]
    assert long_modules(tmp_path, limit=66, base=tmp_path) == []
