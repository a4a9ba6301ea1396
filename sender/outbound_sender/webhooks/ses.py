"""Amazon SES delivery events, published by its configuration set to an SNS topic: the handler the
registry mounts at providers/ses.py's SNS_PATH, and the reading of each event into a DeliveryEvent.

SNS signs with its certificate (webhooks/sns.py): there is no shared secret, the account's settings
name the topics accepted (the only ones a subscription is confirmed for) and the URL prefixes
trusted for certificates besides https://sns.<region>.amazonaws.com/.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response

from outbound_sender.domain import Channel, DeliveryStatus, ErrorCode
from outbound_sender.providers.ses import OUR_ID, SesSettings
from outbound_sender.webhooks import sns
from outbound_sender.webhooks.endpoints import Endpoints, forbidden, json_body
from outbound_sender.webhooks.events import (
    MAX_CODE,
    DeliveryEvent,
    MalformedEvent,
    Parsed,
    free_text,
    identifier,
    iso_time,
    our_id,
    status_name,
)

NAME = "ses"
log = logging.getLogger("webhooks")
STATUS = {
    "Send": (DeliveryStatus.SENT, None),
    "Delivery": (DeliveryStatus.DELIVERED, None),
    "Open": (DeliveryStatus.READ, None),
    "Click": (DeliveryStatus.READ, None),
    "DeliveryDelay": (DeliveryStatus.DEFERRED, ErrorCode.TEMPORARY_ERROR),
    "Reject": (DeliveryStatus.UNDELIVERED, ErrorCode.PERMANENT_ERROR),  # SES would not send it (virus)
    "Rendering Failure": (DeliveryStatus.UNDELIVERED, ErrorCode.PERMANENT_ERROR),  # template data
    "Complaint": (None, ErrorCode.RECIPIENT_UNSUBSCRIBED),  # after delivery: recorded, not a failure
}
SUPPRESSED = ("Suppressed", "OnAccountSuppressionList")


def _bounce(detail: Mapping[str, Any]) -> tuple[DeliveryStatus, ErrorCode, str | None, str | None]:
    kind = str(detail.get("bounceType") or "Undetermined")
    sub = str(detail.get("bounceSubType") or "")
    if kind == "Permanent":
        error = ErrorCode.RECIPIENT_UNSUBSCRIBED if sub in SUPPRESSED else ErrorCode.INVALID_EMAIL
    else:  # Transient: SES gave up on a mailbox that may take mail later; Undetermined
        error = ErrorCode.TEMPORARY_ERROR if kind == "Transient" else ErrorCode.PERMANENT_ERROR
    recipients = detail.get("bouncedRecipients")
    first = recipients[0] if isinstance(recipients, list) and recipients else {}
    text = first.get("diagnosticCode") or first.get("status") if isinstance(first, Mapping) else None
    return DeliveryStatus.BOUNCED, error, free_text(f"{kind}/{sub}" if sub else kind, MAX_CODE), free_text(text)


def _object(event: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The event's own object: `bounce` for Bounce, `deliveryDelay` for DeliveryDelay, `failure`
    for Rendering Failure; empty when absent."""
    key = "failure" if name == "Rendering Failure" else name[:1].lower() + name[1:]
    detail = event.get(key)
    return detail if isinstance(detail, Mapping) else {}


def _detail(
    name: str, detail: Mapping[str, Any]
) -> tuple[DeliveryStatus | None, ErrorCode | None, str | None, str | None]:
    """(status, error, provider code, text) of one SES event; unknown types are recorded only."""
    if name == "Bounce":
        return _bounce(detail)
    status, error = STATUS.get(name, (None, None))
    code = detail.get("delayType") or detail.get("complaintFeedbackType")
    text = detail.get("reason") or detail.get("errorMessage")
    return status, error, free_text(code, MAX_CODE), free_text(text)


def event(envelope: Mapping[str, Any], provider: str = NAME) -> DeliveryEvent:
    """One SNS Notification holding an SES event (event publishing's `eventType`, or an identity
    notification's `notificationType`); MalformedEvent when it cannot be read. Our id is the
    message tag outbound_id, the provider's message id `mail.messageId`."""
    sns_id = identifier(envelope.get("MessageId"), "MessageId", required=True) or ""
    raw_message = envelope.get("Message")
    try:
        event = json.loads(raw_message) if isinstance(raw_message, str) else None
    except (ValueError, RecursionError):
        event = None
    if not isinstance(event, Mapping):
        raise MalformedEvent("Message is not an SES event")
    mail = event.get("mail")
    if not isinstance(mail, Mapping):
        raise MalformedEvent("mail is not an object")
    name = status_name(event.get("eventType") or event.get("notificationType"))
    detail = _object(event, name)
    status, error, code, text = _detail(name, detail)
    tags = mail.get("tags")
    ours = tags.get(OUR_ID) if isinstance(tags, Mapping) else None
    return DeliveryEvent(
        provider=provider,
        channel=Channel.EMAIL,
        event_id=sns_id,
        raw_status=name,
        status=status,
        provider_message_id=identifier(mail.get("messageId"), "messageId", required=True),
        outbound_id=our_id(ours[0] if isinstance(ours, list) and ours else None),
        occurred_at=iso_time(detail.get("timestamp") or mail.get("timestamp")),
        error_code=error,
        provider_code=code,
        error_message=text,
    )


async def notification(endpoints: Endpoints, request: Request) -> Response:
    """An SNS delivery: a SubscriptionConfirmation (confirmed for our topics only), an
    UnsubscribeConfirmation (logged), or a Notification holding one SES event."""
    raw = await endpoints.body(request)
    if isinstance(raw, Response):
        return raw
    message = json_body(raw)
    if not isinstance(message, dict):
        return Response(status_code=400, content="expected an SNS message (a JSON object)")
    refused = await _refusal(endpoints, request, message)
    if refused is not None:
        return refused
    kind = message["Type"]
    topic = {"provider": NAME, "topic": message["TopicArn"]}
    if kind == "SubscriptionConfirmation":
        return await _confirm(endpoints, message)
    if kind == "UnsubscribeConfirmation":
        log.warning("SNS subscription ended: notifications stop", extra={"fields": topic})
        return Response(status_code=200, content="")
    parsed = Parsed()
    parsed.add(event, message)
    return await endpoints.record(NAME, parsed)


async def _refusal(endpoints: Endpoints, request: Request, message: dict[str, Any]) -> Response | None:
    """None for a message of one of our topics, recent, signed with a certificate from SNS."""
    kind = message.get("Type")
    header = request.headers.get("x-amz-sns-message-type")
    if kind not in sns.TYPES or (header is not None and header != kind):
        return forbidden(NAME, "Type", endpoints.metrics)
    account = endpoints.account(NAME, SesSettings)
    if account is None or message.get("TopicArn") not in account.sns_topic_arns:
        return forbidden(NAME, "TopicArn not allowed", endpoints.metrics)
    if not sns.recent(message):
        return forbidden(NAME, "Timestamp (replay)", endpoints.metrics)
    url = message.get("SigningCertURL")
    if not sns.trusted_url(url, message["TopicArn"], account.sns_certificate_url_prefixes):
        return forbidden(NAME, "SigningCertURL", endpoints.metrics)
    certificate = await endpoints.sns_certificates.get(str(url))
    if certificate is None:  # SNS retries: the certificate may be reachable then
        return Response(status_code=503, content="signing certificate unavailable")
    if not sns.verify(message, certificate):
        return forbidden(NAME, "Signature", endpoints.metrics)
    return None


async def _confirm(endpoints: Endpoints, message: dict[str, Any]) -> Response:
    """Confirm the subscription of one of our topics by GETting its SubscribeURL (on SNS too)."""
    url = message.get("SubscribeURL")
    fields = {"provider": NAME, "topic": message["TopicArn"]}
    account = endpoints.account(NAME, SesSettings)
    prefixes = account.sns_certificate_url_prefixes if account else []
    if not sns.trusted_url(url, message["TopicArn"], prefixes, sns.SUBSCRIBE_PATH):
        return forbidden(NAME, "SubscribeURL", endpoints.metrics)
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
