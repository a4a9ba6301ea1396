"""/v1/messages: create one, create a batch, fetch with attempts, list with filters, cancel."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from outbound_sender.api.context import ApiContext, Context, Tenant
from outbound_sender.api.idempotency import batch_keys, request_hash
from outbound_sender.api.problems import ApiError, invalid, not_found
from outbound_sender.api.schemas import (
    CORRELATION_ID,
    ID_MAX,
    IDEMPOTENCY_KEY,
    Attempt,
    BatchIn,
    BatchOut,
    ErrorBody,
    ListQuery,
    Message,
    MessageDetail,
    MessageIn,
    MessagePage,
)
from outbound_sender.api.validation import Problem, check_message
from outbound_sender.domain import NewMessage, Status
from outbound_sender.store import message_api
from outbound_sender.store.message_api import IdempotencyConflict, ListFilter

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MICROSECOND = dt.timedelta(microseconds=1)

CorrelationHeader = Annotated[
    str | None,
    Header(
        alias="X-Correlation-ID",
        pattern=CORRELATION_ID,
        description="Your trace id (generated when absent); returned, stored on the message, logged as "
        "correlationId= by the API and the worker, and sent to the provider.",
    ),
]
IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY,
        description="Per organisation. The same key with the same content returns the original (200); "
        "with other content, 409.",
    ),
]
MessageId = Annotated[int, Path(ge=1, le=ID_MAX, description="Message id")]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in codes}


def _replay(model: type[Message | BatchOut], what: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": f"Replay of an earlier {what} with this Idempotency-Key"}}


def _correlation(correlation_id: CorrelationHeader = None) -> None:
    """Declares and checks X-Correlation-ID on every route; the middleware has already read it."""


router = APIRouter(
    prefix="/v1", tags=["messages"], responses=_errors(401, 422, 429, 503), dependencies=[Depends(_correlation)]
)


def message_out(row: asyncpg.Record) -> Message:
    data = dict(row)
    data["to"] = data.pop("to_recipient")
    data.pop("request_hash", None)
    return Message.model_validate(data)


def _prepare(m: MessageIn, context: ApiContext, prefix: str = "") -> tuple[str, list[Problem]]:
    to, problems = check_message(m, context.now(), prefix)
    return to or m.to, problems


def _new_message(m: MessageIn, to: str, org_id: str, request: Request, key: str | None) -> NewMessage:
    return m.new_message(org_id, to, request.state.correlation_id, key)


def _content(m: MessageIn, to: str) -> dict[str, Any]:
    return {**m.model_dump(mode="json"), "to": to}


def _created(context: ApiContext, response: Response, created: message_api.Created) -> None:
    if created.created:
        for row in created.rows:
            context.metrics.created.labels(row["channel"]).inc()
    else:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"


@router.post(
    "/messages",
    status_code=201,
    summary="Create a message",
    responses=_replay(Message, "request") | _errors(409, 413),
)
async def create_message(
    message: MessageIn,
    request: Request,
    response: Response,
    org_id: Tenant,
    context: Context,
    *,
    idempotency_key: IdempotencyHeader = None,
) -> Message:
    to, problems = _prepare(message, context)
    if problems:
        raise invalid(problems)
    new = _new_message(message, to, org_id, request, idempotency_key)
    try:
        created = await message_api.create_one(context.pool, new, request_hash("message", _content(message, to)))
    except IdempotencyConflict as error:
        raise ApiError(409, "idempotency_conflict", str(error)) from None
    _created(context, response, created)
    out = message_out(created.rows[0])
    request.state.message_id = out.id
    response.headers["Location"] = f"/v1/messages/{out.id}"
    return out


@router.post(
    "/messages/batch",
    status_code=201,
    summary="Create many messages in one transaction (all or none)",
    responses=_replay(BatchOut, "batch") | _errors(409, 413),
)
async def create_batch(
    batch: BatchIn,
    request: Request,
    response: Response,
    org_id: Tenant,
    context: Context,
    *,
    idempotency_key: IdempotencyHeader = None,
) -> BatchOut:
    prepared = [_prepare(m, context, f"messages[{i}].") for i, m in enumerate(batch.messages)]
    problems = [problem for _, found in prepared for problem in found]
    if problems:
        raise invalid(problems)
    keys = batch_keys(idempotency_key, len(batch.messages))
    news = [
        _new_message(m, to, org_id, request, k) for m, (to, _), k in zip(batch.messages, prepared, keys, strict=True)
    ]
    digest = request_hash("batch", [_content(m, to) for m, (to, _) in zip(batch.messages, prepared, strict=True)])
    try:
        created = await message_api.create_batch(context.pool, news, digest)
    except IdempotencyConflict as error:
        raise ApiError(409, "idempotency_conflict", str(error)) from None
    _created(context, response, created)
    return BatchOut(messages=[message_out(row) for row in created.rows])


@router.get("/messages/{message_id}", summary="A message with its attempts and delivery state", responses=_errors(404))
async def get_message(message_id: MessageId, request: Request, org_id: Tenant, context: Context) -> MessageDetail:
    found = await message_api.get_with_attempts(context.pool, org_id, message_id)
    if found is None:
        raise not_found()
    row, attempts = found
    request.state.message_id = message_id
    detail = message_out(row).model_dump()
    return MessageDetail.model_validate({**detail, "attempts": [Attempt.model_validate(dict(a)) for a in attempts]})


@router.get("/messages", summary="List messages, newest first, with filters and a cursor")
async def list_messages(query: Annotated[ListQuery, Query()], org_id: Tenant, context: Context) -> MessagePage:
    rows = await message_api.list_page(context.pool, org_id, _filter(query), query.limit + 1)
    page = rows[: query.limit]
    cursor = encode_cursor(page[-1]["created_at"], page[-1]["id"]) if len(rows) > query.limit else None
    return MessagePage(data=[message_out(row) for row in page], next_cursor=cursor)


@router.post(
    "/messages/{message_id}/cancel",
    summary="Cancel a queued message",
    responses=_errors(404, 409),
)
async def cancel_message(message_id: MessageId, request: Request, org_id: Tenant, context: Context) -> Message:
    row, cancelled_now = await message_api.cancel(context.pool, org_id, message_id)
    if row is None:
        raise not_found()
    request.state.message_id = message_id
    if not cancelled_now and row["status"] != Status.CANCELLED:
        raise ApiError(409, "not_cancellable", f"the message is {row['status']}; only QUEUED messages can be cancelled")
    return message_out(row)


def _filter(q: ListQuery) -> ListFilter:
    return ListFilter(
        status=q.status.value if q.status else None,
        channel=q.channel.value if q.channel else None,
        dossier_id=q.dossier_id,
        template_code=q.template_code,
        correlation_id=q.correlation_id,
        created_after=q.created_after,
        created_before=q.created_before,
        after=decode_cursor(q.cursor) if q.cursor else None,
    )


def encode_cursor(created_at: dt.datetime, message_id: int) -> str:
    micros = (created_at - EPOCH) // MICROSECOND
    return base64.urlsafe_b64encode(f"{micros}.{message_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        micros, message_id = (int(part) for part in text.split("."))
        created_at = EPOCH + micros * MICROSECOND
    except (ValueError, binascii.Error, OverflowError, UnicodeDecodeError):
        raise invalid([Problem("cursor", "is not a cursor from this API")], location="query") from None
    if not 0 <= message_id <= ID_MAX:
        raise invalid([Problem("cursor", "is not a cursor from this API")], location="query")
    return created_at, message_id
