"""The product stands on its own: no shipped file cites the development notes beside the checkout.

Users of the project get the repository, not the notes it was built from; what a reader needs is in
docs/. Tests may read the runbook from beside the checkout as test data, so tests/ is exempt.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITATION = re.compile(r"(?<![\w-])shared/[\w./-]+\.md|/work/shared")


def shipped_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [name for name in listed.stdout.splitlines() if not name.startswith("tests/")]


def test_no_shipped_file_cites_the_development_notes() -> None:
    offenders = []
    for name in shipped_files():
        path = ROOT / name
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        offenders += [f"{name}: {match.group(0)}" for match in CITATION.finditer(text)]
    assert not offenders, offenders
