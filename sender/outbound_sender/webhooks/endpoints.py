"""The delivery webhook handlers, mounted by webhooks/router.py where providers/registry.py says.

Fail closed: a missing secret, a missing, wrong or not well-formed signature -> 403 and nothing is
recorded. A signed body that is not JSON of the expected shape -> 400. Otherwise each event is read
on its own: the good ones are recorded, the malformed ones and those naming another account
(where the provider names one and an account is configured) are counted, logged and dropped, and
the request is acknowledged with 200 (duplicates included: the provider must stop retrying).
Database trouble -> 503 (the provider retries later). No other status is reachable by design.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import asyncpg
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from outbound_sender import tracing
from outbound_sender.metrics import Metrics
from outbound_sender.providers.settings import AccountSettings
from outbound_sender.webhooks import events, sns, store
from outbound_sender.webhooks.events import DeliveryEvent

log = logging.getLogger("webhooks")
A = TypeVar("A", bound=AccountSettings)
PoolSource = asyncpg.Pool | Callable[[], asyncpg.Pool]
MAX_FORM_FIELDS = 200  # a form-encoded receipt has a few dozen


@dataclass(frozen=True)
class WebhookConfig:
    # Each provider's account, by provider name: its handler reads its secrets and account there
    # (none: every receipt of that provider is refused).
    accounts: Mapping[str, AccountSettings] = field(default_factory=dict)
    public_url: str | None = None  # where providers reach this router's prefix, as they sign it
    path_prefix: str = "/webhooks"
    max_body_bytes: int = 5_000_000


def forbidden(provider: str, reason: str, metrics: Metrics | None) -> Response:
    log.warning("webhook refused: invalid signature", extra={"fields": {"provider": provider, "reason": reason}})
    if metrics is not None:
        metrics.webhook_events.labels(provider, "rejected").inc()
    return Response(status_code=403, content="forbidden")


class Endpoints:
    """What every provider's webhook handler shares: the body under its limit, the account check,
    recording in the database and the counters. The handlers are the providers' own
    (webhooks/<provider>.py), each called with this object; providers/registry.py mounts them."""

    def __init__(self, config: WebhookConfig, pool: PoolSource, metrics: Metrics | None) -> None:
        self.config = config
        self._pool = pool
        self.metrics = metrics
        self.sns_certificates = sns.Certificates()

    def account(self, provider: str, model: type[A]) -> A | None:
        """The account of `provider` the webhooks were given, None when there is none."""
        account = self.config.accounts.get(provider)
        return account if isinstance(account, model) else None

    def pool(self) -> asyncpg.Pool:
        return self._pool if isinstance(self._pool, asyncpg.Pool) else self._pool()

    def signed_url(self, request: Request, path: str) -> str:
        if not self.config.public_url:
            return str(request.url)
        query = request.url.query
        return self.config.public_url.rstrip("/") + path + (f"?{query}" if query else "")

    async def body(self, request: Request) -> bytes | Response:
        """The raw body, or the answer when there is none to read: 413 over max_body_bytes, 400
        when the client went away mid-body (not a 500 and a traceback per dropped connection)."""
        length = request.headers.get("content-length", "")
        if length.isascii() and length.isdigit() and int(length) > self.config.max_body_bytes:
            return Response(status_code=413)
        raw = bytearray()
        try:
            async for chunk in request.stream():  # a chunked body has no Content-Length to check first
                raw += chunk
                if len(raw) > self.config.max_body_bytes:
                    return Response(status_code=413)
        except ClientDisconnect:
            return Response(status_code=400, content="incomplete body")
        return bytes(raw)

    def count(self, provider: str, outcome: str, count: int) -> None:
        if self.metrics is not None and count:
            self.metrics.webhook_events.labels(provider, outcome).inc(count)

    def malformed(self, provider: str, reasons: Sequence[str]) -> None:
        """Events that cannot be read are acknowledged (the provider would resend them for days),
        counted and logged: how many, and why (field names only, never values)."""
        if reasons:
            fields = {"provider": provider, "count": len(reasons), "reasons": sorted(set(reasons))[:10]}
            log.warning("webhook events malformed, acknowledged and dropped", extra={"fields": fields})
            self.count(provider, "malformed", len(reasons))

    def of_our_account(self, provider: str, batch: Sequence[DeliveryEvent], account: str) -> list[DeliveryEvent]:
        """The events that name our account, or name none. Another account's receipts cannot be
        about our messages: they are acknowledged, counted and dropped."""
        ours = [e for e in batch if not account or e.account is None or e.account == account]
        if len(ours) < len(batch):
            fields = {"provider": provider, "count": len(batch) - len(ours)}
            log.warning("webhook events of another account dropped", extra={"fields": fields})
            self.count(provider, "foreign_account", len(batch) - len(ours))
        return ours

    async def record(self, provider: str, parsed: events.Parsed, account: str = "") -> Response:
        self.malformed(provider, parsed.malformed)
        batch = self.of_our_account(provider, parsed.events, account)
        started_ns = time.time_ns()
        try:
            stats = await store.record(self.pool(), batch)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            # The type and SQLSTATE only: a PostgreSQL message can quote the values of the batch.
            fields = {"provider": provider, "error": type(error).__name__, "sqlstate": getattr(error, "sqlstate", None)}
            log.error("webhook not recorded", extra={"fields": fields})
            return Response(status_code=503, content="try again")
        self.malformed(provider, ["refused by the database"] * stats.malformed)
        self.count(provider, "recorded", stats.recorded - stats.unmatched)
        self.count(provider, "unmatched", stats.unmatched)
        self.count(provider, "duplicate", stats.duplicates)
        self.count(provider, "resolved_ambiguous", stats.resolved_ambiguous)
        if tracing.enabled() and stats.receipts:
            await store.trace_receipts(self.pool(), provider, batch[0].channel.value, stats, started_ns)
        return Response(status_code=200, content="")


def form_pairs(raw: bytes) -> list[tuple[str, str]] | None:
    """The form's fields; None when there are more than a status callback ever has (parse_qsl
    counts the separators before parsing: refused without the work of parsing and signing)."""
    try:
        return parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        return None


def json_body(raw: bytes) -> Any:
    """The parsed body, or None: not UTF-8 JSON, or nested too deep for the parser."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def json_object(raw: bytes) -> dict[str, Any]:
    value = json_body(raw)
    return value if isinstance(value, dict) else {}
