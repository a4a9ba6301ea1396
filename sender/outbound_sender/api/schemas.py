"""Request and response models: the published OpenAPI document is generated from these.

Requests reject unknown fields. Types are strict where JSON is unambiguous (an integer field does not
take "5"), so what the document promises is exactly what the API accepts.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

from outbound_sender.api import validation as v
from outbound_sender.domain import Channel, NewMessage, Status

MAX_BATCH = 500
ID_MAX = 2**63 - 1
CORRELATION_ID = r"^[A-Za-z0-9._:/@+-]{1,128}$"
IDEMPOTENCY_KEY = r"^[\x21-\x22\x24-\x7e]{1,255}$"  # visible ASCII without '#' (batch keys use it)


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _datetime_text(value: object) -> object:
    """Only RFC 3339 text (pydantic alone would also take numbers as Unix times)."""
    if isinstance(value, dt.datetime) or (isinstance(value, str) and _RFC3339.match(value)):
        return value
    raise ValueError("must be an RFC 3339 date-time with a time zone offset, e.g. 2026-03-01T09:30:00Z")


EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
_RANGE = "must be on or after 2000-01-01T00:00:00Z and before 9000-01-01T00:00:00Z"


def _aware(value: dt.datetime) -> dt.datetime:
    """A zoned instant inside [EARLIEST, LATEST): every timestamp the API takes (send_at and the list
    filters). Year-1 instants would reach PostgreSQL as -infinity through asyncpg, and an instant
    whose UTC form leaves year 9999 (9999-12-31T23:59:59-23:59) cannot even be compared."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must include a time zone offset (Z or +hh:mm)")
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError(_RANGE) from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(_RANGE)
    return value


Body = Annotated[str, Field(min_length=1, max_length=v.BODY_MAX), AfterValidator(v.storable_text)]
Subject = Annotated[str, Field(min_length=1, max_length=v.SUBJECT_MAX), AfterValidator(v.single_line)]
Label = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(v.single_line)]
TemplateCode = Annotated[str, Field(pattern=v.TEMPLATE_CODE)]
Language = Annotated[str, Field(pattern=v.LANGUAGE)]
ParamKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,64}$")]
ParamValue = Annotated[str, Field(max_length=1024), AfterValidator(v.storable_text)]
ParamList = Annotated[list[ParamValue], Field(min_length=1, max_length=v.PARAM_LIST_MAX)]
AwareTimestamp = Annotated[
    dt.datetime,
    BeforeValidator(_datetime_text),
    Field(json_schema_extra={"format": "date-time"}),
    AfterValidator(_aware),
]


class MessageIn(BaseModel):
    """A message to send. Which fields apply depends on the channel (docs/api.md)."""

    model_config = ConfigDict(extra="forbid", title="NewMessage")

    channel: Channel
    to: str = Field(
        min_length=1,
        max_length=320,
        description="SMS and WHATSAPP: an E.164 phone number (+14155552671). EMAIL: an e-mail address.",
    )
    body: Body | None = Field(None, description="Text. At most 1600 characters for SMS, 4096 for WHATSAPP.")
    subject: Subject | None = Field(None, description="EMAIL only; required without template_code.")
    template_code: TemplateCode | None = Field(
        None, description="WHATSAPP: approved template name (lowercase, digits, _). EMAIL: template id."
    )
    template_language: Language | None = Field(None, description="WHATSAPP template language, e.g. en_US.")
    template_params: dict[ParamKey, ParamValue | ParamList] = Field(
        default_factory=dict,
        max_length=100,
        description="Template variables: a string is a named parameter; a list of strings is positional "
        '(WHATSAPP: "header" and "body" fill {{1}}, {{2}}, ... in order; EMAIL: any dynamic template data).',
    )
    dossier_id: Label | None = Field(None, description="Your case or customer reference; filterable.")
    priority: StrictInt = Field(0, ge=-100, le=100, description="Higher is sent first among due messages.")
    max_attempts: StrictInt = Field(5, ge=1, le=20, description="Provider calls before the message FAILS.")
    send_at: AwareTimestamp | None = Field(
        None, description="Scheduled send time (not before); at most 366 days ahead."
    )

    def new_message(self, org_id: str, to: str, correlation_id: str | None, idempotency_key: str | None) -> NewMessage:
        """The message to store, with `to` as check_message normalized it."""
        return NewMessage(
            org_id=org_id,
            channel=self.channel,
            to_recipient=to,
            body=self.body,
            subject=self.subject,
            template_code=self.template_code,
            template_language=self.template_language,
            template_params=dict(self.template_params),
            dossier_id=self.dossier_id,
            correlation_id=correlation_id,
            priority=self.priority,
            max_attempts=self.max_attempts,
            send_at=self.send_at,
            idempotency_key=idempotency_key,
        )


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", title="NewMessageBatch")

    messages: list[MessageIn] = Field(min_length=1, max_length=MAX_BATCH)


class Attempt(BaseModel):
    """One provider call."""

    attempt_no: int
    channel: str
    provider: str | None
    outcome: str = Field(description="SENT, RETRY, FAILED or DEFER")
    applied: bool
    ambiguous: bool = Field(description="No answer came back after the request left: it may have been sent.")
    error_code: str | None
    error_message: str | None
    provider_code: str | None
    provider_message_id: str | None
    http_status: int | None
    duration_ms: int | None
    next_retry_at: dt.datetime | None
    started_at: dt.datetime | None
    created_at: dt.datetime


class Message(BaseModel):
    """A message as stored, with its lifecycle state."""

    id: int
    org_id: str
    channel: Channel
    status: Status
    to: str
    body: str | None
    subject: str | None
    template_code: str | None
    template_language: str | None
    template_params: dict[str, Any]
    dossier_id: str | None
    correlation_id: str | None
    priority: int
    max_attempts: int
    attempt_count: int
    send_at: dt.datetime | None
    error_code: str | None
    error_message: str | None
    provider: str | None
    provider_message_id: str | None
    delivery_status: str | None = Field(description="Delivery state reported by the provider (webhooks).")
    delivery_updated_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    sent_at: dt.datetime | None
    idempotency_key: str | None


class MessageDetail(Message):
    attempts: list[Attempt]


class MessagePage(BaseModel):
    data: list[Message]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class BatchOut(BaseModel):
    messages: list[Message]


class ListQuery(BaseModel):
    """Filters of GET /v1/messages; the organisation is always the API key's."""

    model_config = ConfigDict(extra="forbid")

    status: Status | None = None
    channel: Channel | None = None
    dossier_id: Label | None = None
    template_code: TemplateCode | None = None
    correlation_id: str | None = Field(None, pattern=CORRELATION_ID)
    created_after: AwareTimestamp | None = Field(None, description="Inclusive lower bound of created_at.")
    created_before: AwareTimestamp | None = Field(None, description="Exclusive upper bound of created_at.")
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the field, e.g. messages[2].to")
    location: str = Field(description="body, query, path or header")
    reason: str


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. validation_failed, not_found")
    message: str
    fields: list[FieldError] = Field(default_factory=list)


class ErrorBody(BaseModel):
    error: ErrorInfo
    correlation_id: str | None = None
