"""Provider errors: retry intent lives in the exception type.

    ProviderError                 every failed provider call; carries the normalized ErrorCode,
    │                             the provider's raw code/message (kept on outbound_attempt)
    ├── PermanentError            never retried: the message goes to FAILED at once
    └── TemporaryError            retried with backoff; `retry_after` is the provider's hint (seconds)
        ├── RateLimitedError      the provider throttled us (429/20429, X-RateLimit-Reset, 130429...)
        └── AmbiguousSendError    the request left us and no answer came back (read timeout,
                                  connection dropped after sending): the provider may have accepted
                                  it, so a retry can duplicate. Counted separately.

`about_recipient`: the answer concerns this message's recipient (WhatsApp 131049 per-user marketing
limit, an unreachable handset...), not the provider's health: the circuit breaker counts it as a
success even when it is retried.

ConfigError is raised for invalid settings at start-up, never during a send.
"""

from __future__ import annotations

from outbound_sender.domain import ErrorCode


class ConfigError(Exception):
    """Invalid configuration: start-up stops with this message."""


class ProviderError(Exception):
    retryable: bool = False

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        provider_code: str | None = None,
        retry_after: float | None = None,
        http_status: int | None = None,
        about_recipient: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.provider_code = provider_code
        self.retry_after = retry_after
        self.http_status = http_status
        self.about_recipient = about_recipient

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, provider_code={self.provider_code!r})"


class PermanentError(ProviderError):
    retryable = False


class TemporaryError(ProviderError):
    retryable = True


class RateLimitedError(TemporaryError):
    pass


class AmbiguousSendError(TemporaryError):
    pass
