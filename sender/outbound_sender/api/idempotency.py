"""Idempotency-Key handling: what is compared, and how a batch's key maps onto its rows.

The key is scoped per organisation (the unique index is (org_id, idempotency_key)). A request is "the
same" when its validated, normalized content hashes the same, so key order and whitespace do not
matter and the correlation id (a property of the attempt, not the content) is left out. A batch
stores its key on each row as `<key>#<index>`; '#' is not allowed in a client's key, so a single
message's key never collides with a batch's row.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


def request_hash(kind: str, content: Any) -> str:
    """SHA-256 of the canonical JSON of `content` (a JSON-ready dump of the validated request)."""
    canonical = orjson.dumps({"kind": kind, "content": content}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def batch_keys(key: str | None, count: int) -> list[str | None]:
    if key is None:
        return [None] * count
    return [f"{key}#{index}" for index in range(count)]
