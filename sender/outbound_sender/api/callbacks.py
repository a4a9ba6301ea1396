"""/v1/callbacks: the URLs an organisation's status changes are POSTed to (docs/callbacks.md).

A URL is checked when registered (callbacks.targets: public addresses only unless
OUTBOUND_CALLBACKS_ALLOW_PRIVATE). The signing secret is returned once, by the registration and by
each rotation; it is never listed.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from outbound_sender.api.context import Context, Tenant
from outbound_sender.api.problems import ApiError, invalid, not_found
from outbound_sender.api.routes import _correlation, _errors
from outbound_sender.api.validation import Problem
from outbound_sender.callbacks import signing
from outbound_sender.callbacks.targets import MAX_URL, RefusedTarget, check
from outbound_sender.store import callbacks as endpoints

MAX_ENDPOINTS = 10  # per organisation
MAX_GRACE_SECONDS = 7 * 86_400
ID_MAX = 2**63 - 1
EndpointId = Annotated[int, Path(ge=1, le=ID_MAX, description="Callback endpoint id")]


class CallbackIn(BaseModel):
    """A URL to POST this organisation's status changes to."""

    model_config = ConfigDict(extra="forbid", title="NewCallback")

    url: str = Field(
        min_length=1,
        max_length=MAX_URL,
        description="http or https URL whose host resolves only to public addresses.",
    )
    description: str = Field("", max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid", title="CallbackRotation")

    previous_secret_valid_seconds: StrictInt = Field(
        86_400,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="How long the current secret keeps signing beside the new one (0: stop at once).",
    )


class Callback(BaseModel):
    id: int
    url: str
    description: str
    created_at: dt.datetime
    rotated_at: dt.datetime | None
    previous_secret_until: dt.datetime | None = Field(
        description="While in the future, requests carry a second v1 signature made with the previous secret."
    )


class CallbackWithSecret(Callback):
    secret: str = Field(description="The HMAC-SHA256 key of the Outbound-Signature header. Shown only here.")


class CallbackList(BaseModel):
    data: list[Callback]


router = APIRouter(
    prefix="/v1", tags=["callbacks"], responses=_errors(401, 422, 429, 503), dependencies=[Depends(_correlation)]
)


def _out(row: asyncpg.Record, secret: str | None = None) -> Callback:
    return CallbackWithSecret(**dict(row), secret=secret) if secret else Callback(**dict(row))


@router.post("/callbacks", status_code=201, summary="Register a callback URL", responses=_errors(409))
async def create_callback(body: CallbackIn, org_id: Tenant, context: Context) -> CallbackWithSecret:
    try:
        await check(body.url, allow_private=context.callbacks.allow_private, resolver=context.resolver)
    except RefusedTarget as error:
        raise invalid([Problem("url", str(error))]) from None
    if await endpoints.endpoint_count(context.pool, org_id) >= MAX_ENDPOINTS:
        raise ApiError(409, "too_many_callbacks", f"an organisation has at most {MAX_ENDPOINTS} callback URLs")
    secret = signing.new_secret()
    row = await endpoints.create_endpoint(context.pool, org_id, body.url, body.description, secret)
    if row is None:
        raise ApiError(409, "callback_exists", "this URL is already registered; rotate its secret instead")
    out = _out(row, secret)
    assert isinstance(out, CallbackWithSecret)
    return out


@router.get("/callbacks", summary="List the callback URLs (without secrets)")
async def list_callbacks(org_id: Tenant, context: Context) -> CallbackList:
    rows = await endpoints.list_endpoints(context.pool, org_id)
    return CallbackList(data=[_out(row) for row in rows])


@router.delete(
    "/callbacks/{endpoint_id}",
    status_code=204,
    summary="Remove a callback URL (its undelivered callbacks are dropped)",
    responses=_errors(404),
)
async def delete_callback(endpoint_id: EndpointId, org_id: Tenant, context: Context) -> Response:
    if not await endpoints.delete_endpoint(context.pool, org_id, endpoint_id):
        raise not_found("callback")
    return Response(status_code=204)


@router.post(
    "/callbacks/{endpoint_id}/rotate",
    summary="Replace the signing secret; the old one keeps signing for a grace period",
    responses=_errors(404),
)
async def rotate_callback(
    endpoint_id: EndpointId, org_id: Tenant, context: Context, body: RotateIn | None = None
) -> CallbackWithSecret:
    grace = (body or RotateIn()).previous_secret_valid_seconds
    secret = signing.new_secret()
    row = await endpoints.rotate_secret(context.pool, org_id, endpoint_id, secret, float(grace))
    if row is None:
        raise not_found("callback")
    out = _out(row, secret)
    assert isinstance(out, CallbackWithSecret)
    return out
