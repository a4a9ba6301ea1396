"""Named SQL, loaded from the `.sql` files beside this module (procrastinate-style).

Each file holds blocks that start with `-- name: <query_name>`; the text up to the next such line
is that query. Names are unique across the files of one directory. No SQL is assembled from strings at run time.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

SQL_DIR = Path(__file__).parent / "sql"
_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Split one file's text into {name: statement}."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


class NamedSql:
    """The named statements of every `.sql` file in one directory, read on first use.

    The sender's store (`sql` below) and the operator (`outbound_operator/db.py`) each load their own
    directory through one of these."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @cached_property
    def statements(self) -> dict[str, str]:
        queries: dict[str, str] = {}
        for path in sorted(self.directory.glob("*.sql")):
            for name, body in parse(path.read_text()).items():
                if name in queries:
                    raise ValueError(f"query {name!r} is defined in two files")
                queries[name] = body
        return queries

    def __call__(self, name: str) -> str:
        """The statement named `name`; KeyError names the missing query and the directory."""
        try:
            return self.statements[name]
        except KeyError:
            raise KeyError(f"no SQL query named {name!r} in {self.directory}") from None


_SENDER = NamedSql(SQL_DIR)


def sql(name: str) -> str:
    """The sender's statement named `name`; KeyError names the missing query."""
    return _SENDER(name)
