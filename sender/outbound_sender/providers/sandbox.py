"""The generic sandbox provider's client: every channel, no account, our own simple wire format.

    POST /v1/messages  {"channel", "to", "body"?, "subject"?, "template"?, "reference"}
      201 {"id": "sbx_…", "status": "accepted"}
      4xx/5xx {"error": {"code": <normalized code>, "message": …}}; 429 carries Retry-After.

The server is sandboxes/generic.py, one sandbox of the sandbox framework (sandboxes/base.py: its
rules, latency and counts at `/_sandbox/config` and `/_sandbox/stats`). A provider never imports
it: the sandboxes sit above the providers in the layers.
"""

from __future__ import annotations

import httpx

from outbound_sender.domain import Channel, ErrorCode, OutboundMessage
from outbound_sender.errors import (
    AmbiguousSendError,
    PermanentError,
    ProviderError,
    RateLimitedError,
    TemporaryError,
)
from outbound_sender.providers.base import SendResult

MESSAGES_PATH = "/v1/messages"


def _error_from_response(response: httpx.Response) -> ProviderError:
    try:
        error = response.json()["error"]
        code, text = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, text = "", response.text[:200]
    status = response.status_code
    if status == 429:
        retry_after = float(response.headers.get("Retry-After", "1"))
        return RateLimitedError(
            ErrorCode.RATE_LIMIT_EXCEEDED, text, provider_code=code, retry_after=retry_after, http_status=429
        )
    if status >= 500:
        return TemporaryError(ErrorCode.TEMPORARY_ERROR, text, provider_code=code, http_status=status)
    normalized = ErrorCode(code) if code in ErrorCode.__members__ else ErrorCode.PERMANENT_ERROR
    return PermanentError(normalized, text, provider_code=code, http_status=status)


class SandboxProvider:
    """Client of the generic sandbox server."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, name: str = "sandbox") -> None:
        self._client = client
        self._url = base_url.rstrip("/") + MESSAGES_PATH
        self.name = name
        self.channels = frozenset(Channel)

    async def send(self, message: OutboundMessage) -> SendResult:
        payload = {
            "channel": message.channel.value,
            "to": message.to_recipient,
            "body": message.body,
            "subject": message.subject,
            "template": message.template_code,
            "reference": str(message.id),
        }
        headers = {"X-Correlation-ID": message.correlation_id or ""}
        try:
            response = await self._client.post(self._url, json=payload, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise TemporaryError(ErrorCode.TEMPORARY_ERROR, f"connect failed: {error!r}") from error
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError) as error:
            raise AmbiguousSendError(ErrorCode.TEMPORARY_ERROR, f"no answer after sending: {error!r}") from error
        if response.status_code in (200, 201):
            return SendResult(str(response.json()["id"]), response.status_code, "accepted")
        raise _error_from_response(response)

    async def aclose(self) -> None:
        await self._client.aclose()
