"""Every module of the sender sits in one layer of the import contract (docs/architecture.md "Layers").

`lint-imports` (make lint) checks the imports between the layers the contract names; a module the
contract does not name would be checked by nothing, so this test makes a new module be placed.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sender" / "outbound_sender"


def layered_modules() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["name"].startswith("sender layers")]
    return [name.strip() for layer in contract["layers"] for name in layer.replace("|", ":").split(":")]


def sender_modules(*, with_code_only: bool = False) -> list[str]:
    """The sender's modules; `with_code_only` leaves out the packages whose __init__ holds only a docstring
    (a package split over several layers, such as providers/, is placed module by module)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if with_code_only and path.name == "__init__.py" and not _has_code(path):
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def _has_code(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def test_every_sender_module_is_in_a_layer() -> None:
    layers = layered_modules()

    def placed(module: str) -> bool:
        return any(module == name or module.startswith(name + ".") for name in layers)

    unplaced = [module for module in sender_modules(with_code_only=True) if not placed(module)]
    assert not unplaced, f"not in any layer of [tool.importlinter] in pyproject.toml: {unplaced}"


def test_the_contract_names_only_modules_that_exist() -> None:
    modules = set(sender_modules())
    stale = [name for name in layered_modules() if name not in modules]
    assert not stale, f"the layers name modules that do not exist: {stale}"
