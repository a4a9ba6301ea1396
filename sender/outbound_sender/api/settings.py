"""Settings of the HTTP API (environment prefix OUTBOUND_API_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """OutboundMessageService: the message API and the operational endpoints on the same port."""

    model_config = SettingsConfigDict(env_prefix="OUTBOUND_API_", extra="ignore")

    enabled: bool = Field(
        True,
        description="false: serve only /healthz, /readyz and the metrics (worker-only pods share the port).",
    )
    rate_limit_per_second: float = Field(
        100.0,
        ge=0,
        le=1_000_000,
        description="Sustained requests per second per organisation (0 turns the limit off). A batch "
        "request counts once, so bulk senders use the batch endpoint.",
    )
    rate_limit_burst: int = Field(
        200, ge=1, le=1_000_000, description="Requests an idle organisation may send at once above the rate."
    )
    key_cache_seconds: float = Field(
        10.0,
        ge=0,
        le=300,
        description="How long a verified API key is trusted without asking the database: a revoked key "
        "stops working within this time. 0 checks every request.",
    )
    negative_cache_seconds: float = Field(
        5.0,
        ge=0,
        le=300,
        description="How long a key id the database does not know (or knows revoked) is answered 401 "
        "without asking again: repeated guesses cost one query. 0 asks every time.",
    )
    auth_failures_max: int = Field(
        20,
        ge=0,
        le=1_000_000,
        description="Failed authentications one client address may make per window; then 429 "
        "(auth_throttled) without a database lookup until the window ends. 0 turns it off.",
    )
    auth_failure_window_seconds: float = Field(
        60.0, gt=0, le=86_400, description="The window of OUTBOUND_API_AUTH_FAILURES_MAX."
    )
    pool_size: int = Field(10, ge=1, le=200, description="PostgreSQL connections of one API process.")
    max_body_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="Largest request body (413 above): a full batch of long e-mails fits in the default.",
    )
    max_header_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest request line plus headers; a larger head is answered 431 and the connection closed.",
    )
    request_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A request must arrive whole (head and body) within this time of its first byte, or of "
        "the connection: else 408 and the connection is closed (half-sent requests hold no socket).",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Open connections one process serves; a request on one more gets 503 and is closed.",
    )
    access_log: bool = Field(True, description="One logfmt line per request, with correlationId.")
