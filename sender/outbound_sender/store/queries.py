"""Named SQL, loaded from the `.sql` files beside this module (procrastinate-style).

Each file holds blocks that start with `-- name: <query_name>`; the text up to the next such line
is that query. Names are unique across files. No SQL is assembled from strings at run time.
"""

from __future__ import annotations

import re
from functools import cache
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


@cache
def load_all() -> dict[str, str]:
    queries: dict[str, str] = {}
    for path in sorted(SQL_DIR.glob("*.sql")):
        for name, body in parse(path.read_text()).items():
            if name in queries:
                raise ValueError(f"query {name!r} is defined in two files")
            queries[name] = body
    return queries


def sql(name: str) -> str:
    """The statement named `name`; KeyError names the missing query."""
    try:
        return load_all()[name]
    except KeyError:
        raise KeyError(f"no SQL query named {name!r} in {SQL_DIR}") from None
