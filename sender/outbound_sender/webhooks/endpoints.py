"""The delivery webhook handlers, mounted by webhooks/router.py where providers/registry.py says.

Fail closed: a missing secret, a missing, wrong or not well-formed signature -> 403 and nothing is
recorded. A signed body that is not JSON of the expected shape -> 400. Otherwise each event is read
on its own: the good ones are recorded, the malformed ones and those naming another account
(Twilio AccountSid, WhatsApp phone_number_id, when configured) are counted, logged and dropped, and
the request is acknowledged with 200 (duplicates included: the provider must stop retrying).
Database trouble -> 503 (the provider retries later). No other status is reachable by design.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from outbound_sender import tracing
from outbound_sender.metrics import Metrics
from outbound_sender.providers.twilio import STATUS_CALLBACK_PATH
from outbound_sender.providers.vonage import SignatureMethod
from outbound_sender.webhooks import events, signatures, sns, store
from outbound_sender.webhooks.events import DeliveryEvent

log = logging.getLogger("webhooks")
PoolSource = asyncpg.Pool | Callable[[], asyncpg.Pool]
MAX_FORM_FIELDS = 200  # a Twilio status callback has a few dozen
CHALLENGE = re.compile(r"[0-9]{1,64}")


@dataclass(frozen=True)
class WebhookConfig:
    twilio_auth_token: str = ""
    sendgrid_public_key: str = ""
    whatsapp_app_secret: str = ""
    whatsapp_verify_token: str = ""
    vonage_signature_secret: str = ""
    vonage_signature_method: SignatureMethod = "md5hash"
    # The accounts receipts must come from, where the provider names one ("": not checked).
    twilio_account_sid: str = ""
    whatsapp_phone_number_id: str = ""
    vonage_api_key: str = ""
    # Amazon SES through SNS: the topics accepted (the only ones a subscription is confirmed for),
    # and URL prefixes trusted for certificates besides https://sns.<region>.amazonaws.com/.
    ses_topic_arns: tuple[str, ...] = ()
    ses_certificate_url_prefixes: tuple[str, ...] = ()
    public_url: str | None = None  # where providers reach this router's prefix, as they sign it
    path_prefix: str = "/webhooks"
    max_body_bytes: int = 5_000_000


def _forbidden(provider: str, reason: str, metrics: Metrics | None) -> Response:
    log.warning("webhook refused: invalid signature", extra={"fields": {"provider": provider, "reason": reason}})
    if metrics is not None:
        metrics.webhook_events.labels(provider, "rejected").inc()
    return Response(status_code=403, content="forbidden")


class Endpoints:
    """What every provider's webhook handler shares: the body under its limit, the account check,
    recording in the database and the counters. The providers' own handlers are its methods below;
    providers/registry.py says which routes each provider mounts."""

    def __init__(self, config: WebhookConfig, pool: PoolSource, metrics: Metrics | None) -> None:
        self.config = config
        self._pool = pool
        self.metrics = metrics
        self.sns_certificates = sns.Certificates()

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

    # ---- Twilio ------------------------------------------------------------------------------
    async def twilio(self, request: Request) -> Response:
        raw = await self.body(request)
        if isinstance(raw, Response):
            return raw
        is_json = request.headers.get("content-type", "").startswith("application/json")
        params = [] if is_json else _form_pairs(raw)
        if params is None:
            return Response(status_code=400, content=f"more than {MAX_FORM_FIELDS} form fields")
        url = self.signed_url(request, STATUS_CALLBACK_PATH)
        algorithm = signatures.twilio_algorithm(request.headers.get("x-twilio-webhooks-signature-settings"))
        ok = signatures.verify_twilio(
            self.config.twilio_auth_token,
            url,
            params,
            request.headers.get("x-twilio-signature"),
            algorithm=algorithm,
            json_body=raw if is_json else None,
        )
        if not ok:
            return _forbidden("twilio", "X-Twilio-Signature", self.metrics)
        fields = _json_object(raw) if is_json else dict(params)
        parsed = events.Parsed()
        parsed.add(
            events.twilio_event,
            {k: str(v) for k, v in fields.items()},
            request.query_params.get("outbound_id"),
        )
        return await self.record("twilio", parsed, self.config.twilio_account_sid)

    # ---- SendGrid ----------------------------------------------------------------------------
    async def sendgrid(self, request: Request) -> Response:
        raw = await self.body(request)
        if isinstance(raw, Response):
            return raw
        ok = signatures.verify_sendgrid(
            self.config.sendgrid_public_key,
            raw,
            request.headers.get("x-twilio-email-event-webhook-signature"),
            request.headers.get("x-twilio-email-event-webhook-timestamp"),
        )
        if not ok:
            return _forbidden("sendgrid", "X-Twilio-Email-Event-Webhook-Signature", self.metrics)
        batch = _json(raw)
        if not isinstance(batch, list):
            return Response(status_code=400, content="expected a JSON array of events")
        return await self.record("sendgrid", events.sendgrid_events(batch))

    # ---- WhatsApp ----------------------------------------------------------------------------
    async def whatsapp_verify(self, request: Request) -> Response:
        q = request.query_params
        token = self.config.whatsapp_verify_token
        if q.get("hub.mode") != "subscribe" or not token or not signatures.same(token, q.get("hub.verify_token", "")):
            return _forbidden("whatsapp", "hub.verify_token", self.metrics)
        challenge = q.get("hub.challenge", "")
        if not CHALLENGE.fullmatch(challenge):  # Meta sends a number: echo nothing else back
            return Response(status_code=400, content="hub.challenge must be a number")
        return Response(content=challenge, media_type="text/plain")

    async def whatsapp(self, request: Request) -> Response:
        raw = await self.body(request)
        if isinstance(raw, Response):
            return raw
        if not signatures.verify_meta(self.config.whatsapp_app_secret, raw, request.headers.get("x-hub-signature-256")):
            return _forbidden("whatsapp", "X-Hub-Signature-256", self.metrics)
        payload = _json(raw)
        if not isinstance(payload, dict):
            return Response(status_code=400, content="expected a JSON object")
        return await self.record("whatsapp", events.whatsapp_events(payload), self.config.whatsapp_phone_number_id)

    # ---- Vonage ------------------------------------------------------------------------------
    async def vonage(self, request: Request) -> Response:
        """A delivery receipt, as the account's webhook method sends it: GET with the fields in the
        query, POST as a form, or POST as a JSON object. The signature is one of the fields."""
        raw = await self.body(request)
        if isinstance(raw, Response):
            return raw
        if request.method == "GET":
            pairs = _form_pairs(request.url.query.encode())
        elif request.headers.get("content-type", "").startswith("application/json"):
            fields = _json(raw)
            if not isinstance(fields, dict):
                return Response(status_code=400, content="expected a JSON object")
            pairs = [(str(k), str(v)) for k, v in fields.items() if isinstance(v, str | int | float)]
        else:
            pairs = _form_pairs(raw)
        if pairs is None:
            return Response(status_code=400, content=f"more than {MAX_FORM_FIELDS} fields")
        params = dict(pairs)
        if not signatures.verify_vonage(
            self.config.vonage_signature_secret, params, self.config.vonage_signature_method
        ):
            return _forbidden("vonage", "sig", self.metrics)
        parsed = events.Parsed()
        parsed.add(events.vonage_event, params)
        return await self.record("vonage", parsed, self.config.vonage_api_key)

    # ---- Amazon SES (events published to an SNS topic) ---------------------------------------
    async def ses(self, request: Request) -> Response:
        """An SNS delivery: a SubscriptionConfirmation (confirmed for our topics only), an
        UnsubscribeConfirmation (logged), or a Notification holding one SES event."""
        raw = await self.body(request)
        if isinstance(raw, Response):
            return raw
        message = _json(raw)
        if not isinstance(message, dict):
            return Response(status_code=400, content="expected an SNS message (a JSON object)")
        refused = await self._sns_refusal(request, message)
        if refused is not None:
            return refused
        kind = message["Type"]
        topic = {"provider": "ses", "topic": message["TopicArn"]}
        if kind == "SubscriptionConfirmation":
            return await self._sns_confirm(message)
        if kind == "UnsubscribeConfirmation":
            log.warning("SNS subscription ended: notifications stop", extra={"fields": topic})
            return Response(status_code=200, content="")
        parsed = events.Parsed()
        parsed.add(events.ses_notification, message)
        return await self.record("ses", parsed)

    async def _sns_refusal(self, request: Request, message: dict[str, Any]) -> Response | None:
        """None for a message of one of our topics, recent, signed with a certificate from SNS."""
        kind = message.get("Type")
        header = request.headers.get("x-amz-sns-message-type")
        if kind not in sns.TYPES or (header is not None and header != kind):
            return _forbidden("ses", "Type", self.metrics)
        if message.get("TopicArn") not in self.config.ses_topic_arns:
            return _forbidden("ses", "TopicArn not allowed", self.metrics)
        if not sns.recent(message):
            return _forbidden("ses", "Timestamp (replay)", self.metrics)
        url = message.get("SigningCertURL")
        if not sns.trusted_url(url, message["TopicArn"], self.config.ses_certificate_url_prefixes):
            return _forbidden("ses", "SigningCertURL", self.metrics)
        certificate = await self.sns_certificates.get(str(url))
        if certificate is None:  # SNS retries: the certificate may be reachable then
            return Response(status_code=503, content="signing certificate unavailable")
        if not sns.verify(message, certificate):
            return _forbidden("ses", "Signature", self.metrics)
        return None

    async def _sns_confirm(self, message: dict[str, Any]) -> Response:
        """Confirm the subscription of one of our topics by GETting its SubscribeURL (on SNS too)."""
        url = message.get("SubscribeURL")
        fields = {"provider": "ses", "topic": message["TopicArn"]}
        if not sns.trusted_url(url, message["TopicArn"], self.config.ses_certificate_url_prefixes, sns.SUBSCRIBE_PATH):
            return _forbidden("ses", "SubscribeURL", self.metrics)
        try:
            async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
                answer = await client.get(str(url))
        except httpx.HTTPError as error:
            log.error("SNS subscription not confirmed", extra={"fields": {**fields, "error": type(error).__name__}})
            return Response(status_code=503, content="try again")
        if answer.status_code != 200:
            log.error("SNS subscription not confirmed", extra={"fields": {**fields, "status": answer.status_code}})
            return Response(status_code=503, content="try again")
        log.info("SNS subscription confirmed", extra={"fields": fields})
        return Response(status_code=200, content="")


def _form_pairs(raw: bytes) -> list[tuple[str, str]] | None:
    """The form's fields; None when there are more than a status callback ever has (parse_qsl
    counts the separators before parsing: refused without the work of parsing and signing)."""
    try:
        return parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        return None


def _json(raw: bytes) -> Any:
    """The parsed body, or None: not UTF-8 JSON, or nested too deep for the parser."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _json_object(raw: bytes) -> dict[str, Any]:
    value = _json(raw)
    return value if isinstance(value, dict) else {}
