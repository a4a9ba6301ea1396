"""One error body for every 4xx and 5xx: {"error": {"code", "message", "fields"}, "correlation_id"}.

A 422 names each bad field with its location and the reason; the request stored nothing. While the
database cannot be reached (refused, restarting, shutting down, a pool whose connections broke) the
answer is 503 `service_unavailable` with Retry-After, not a 500: the client may retry as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from outbound_sender.api.schemas import ErrorBody, ErrorInfo, FieldError
from outbound_sender.api.validation import Problem

log = logging.getLogger("OutboundMessageService")
UNAVAILABLE_RETRY_AFTER_SECONDS = 5

# Errors of a database that cannot answer now, each handled as 503 (the most specific class wins, so a
# PostgresError outside these stays a 500): refused or reset connections (OSError), connect timeouts,
# class 08 (connection exceptions), 57P01/57P02/57P03 (admin shutdown, crash shutdown, starting up),
# 53300 (too many connections), and the client's own broken-connection and pool states.
UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """An answer other than success, raised anywhere below a route."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields)
        self.headers = headers or {}


def invalid(problems: Sequence[Problem], location: str = "body") -> ApiError:
    fields = [FieldError(field=p.field, location=location, reason=p.reason) for p in problems]
    return ApiError(422, "validation_failed", _summary(len(fields)), fields)


def not_found(what: str = "message") -> ApiError:
    return ApiError(404, "not_found", f"no such {what}")


def _summary(count: int) -> str:
    noun = "field is" if count == 1 else "fields are"
    return f"{count} {noun} invalid; nothing was stored"


def field_path(loc: Sequence[int | str]) -> str:
    """('messages', 0, 'to') -> 'messages[0].to'."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(request body)"


def _field(error: dict[str, Any]) -> FieldError:
    loc = list(error.get("loc", ()))
    location = str(loc.pop(0)) if loc and loc[0] in {"body", "query", "path", "header", "cookie"} else "body"
    if error.get("type") == "json_invalid":
        reason = f"is not valid JSON: {error.get('ctx', {}).get('error', 'decode error')}"
        return FieldError(field="(request body)", location=location, reason=reason)
    reason = str(error.get("msg", "is invalid"))
    if error.get("type") == "extra_forbidden":
        reason = "is not a known field"
    elif reason.startswith("Value error, "):
        reason = reason.removeprefix("Value error, ")
    return FieldError(field=field_path(loc), location=location, reason=reason)


def error_response(request: Request, error: ApiError) -> Response:
    state = request.scope.setdefault("state", {})
    body = ErrorBody(
        error=ErrorInfo(code=error.code, message=error.message, fields=error.fields),
        correlation_id=state.get("correlation_id"),
    )
    state["error_code"] = error.code
    return Response(
        body.model_dump_json(), status_code=error.status, headers=error.headers, media_type="application/json"
    )


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(request, exc)


async def _on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    fields = [_field(dict(e)) for e in exc.errors()]
    return error_response(request, ApiError(422, "validation_failed", _summary(len(fields)), fields))


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:  # FastAPI could not read the body (not UTF-8): an invalid body like any other
        field = FieldError(field="(request body)", location="body", reason="is not valid UTF-8 JSON")
        return error_response(request, ApiError(422, "validation_failed", _summary(1), [field]))
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    return error_response(request, ApiError(exc.status_code, code, str(exc.detail), headers=headers))


async def _on_unavailable(request: Request, exc: Exception) -> Response:
    log.warning(
        "OutboundMessageService database unavailable",
        extra={"fields": {"error": type(exc).__name__, "path": request.url.path}},
    )
    headers = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)}
    error = ApiError(503, "service_unavailable", "the database is unavailable; retry later", headers=headers)
    return error_response(request, error)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("OutboundMessageService unexpected error", exc_info=exc)
    return error_response(request, ApiError(500, "internal_error", "internal error"))


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(HTTPException, _on_http)
    for unavailable in UNAVAILABLE:
        app.add_exception_handler(unavailable, _on_unavailable)
    app.add_exception_handler(Exception, _on_unexpected)
