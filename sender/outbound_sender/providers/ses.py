"""Amazon SES API v2 SendEmail: POST https://email.{region}.amazonaws.com/v2/email/outbound-emails,
the e-mail backup provider.

JSON (rest-json), signed with AWS Signature Version 4 (service `ses`) by botocore's signer. A plain
message is `Content.Simple` (Subject + Body.Text, UTF-8); a template message is
`Content.Template` (TemplateName + TemplateData, a JSON string). Our message id travels as the
message tag `outbound_id` (EmailTags), which every event SES publishes repeats in `mail.tags`.
200 answers `{"MessageId"}`. An error answer names its error shape in the `x-amzn-ErrorType`
header (or `code` / `__type` in the body) with `{"message"}`; the shape decides the normalized
error (docs/providers.md, "Amazon SES"). Delivery events reach us through an SNS topic the
configuration set publishes to (webhooks/sns.py).
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
from collections.abc import Generator
from pathlib import Path
from typing import Annotated, Any

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from outbound_sender.domain import Channel, ErrorCode, OutboundMessage
from outbound_sender.errors import ProviderError
from outbound_sender.providers import http
from outbound_sender.providers.base import SendResult
from outbound_sender.providers.http import P, R, T
from outbound_sender.providers.settings import AccountSettings, read_secret_files, secret

LABEL = "SES"
log = logging.getLogger(f"provider.{LABEL}")
SERVICE = "ses"  # the signing name of the sesv2 service model
SEND_PATH = "/v2/email/outbound-emails"
ACCOUNT_PATH = "/v2/email/account"
SNS_PATH = "/ses/sns"
OUR_ID = "outbound_id"  # the message tag carrying our message id
REGION = r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$"


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class SesSettings(AccountSettings):
    """Amazon SES API v2 (e-mail)."""

    model_config = SettingsConfigDict(env_prefix="SES_", extra="ignore")

    priority: int = Field(20, description="Failover order inside the channel: after SendGrid (10) by default.")
    access_key_id: str | None = Field(None, pattern=r"^[A-Z0-9]{16,128}$", description="IAM access key id.")
    access_key_id_file: Path | None = Field(None, description="Mounted secret holding the access key id.")
    secret_access_key: SecretStr | None = None
    secret_access_key_file: Path | None = Field(None, description="Mounted secret holding the secret access key.")
    session_token: SecretStr | None = Field(None, description="Temporary credentials only (STS).")
    session_token_file: Path | None = Field(None, description="Optional: a missing file means no session token.")
    region: str | None = Field(None, pattern=REGION, description="The SES region, e.g. eu-west-1.")
    from_email: str | None = Field(None, description="A verified identity (address or domain) of the account.")
    from_name: str | None = None
    reply_to: str | None = Field(None, description="ReplyToAddresses (one address).")
    configuration_set_name: str | None = Field(
        None, description="The configuration set whose event destination publishes to the SNS topic below."
    )
    base_url: str = Field("", description="Empty: https://email.<region>.amazonaws.com. A sandbox or a mock.")
    sns_topic_arns: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="SNS topics whose delivery notifications are accepted (comma-separated); "
        "a subscription is confirmed only for these. Empty: every notification is refused.",
    )
    sns_certificate_url_prefixes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra URL prefixes trusted for SNS signing certificates, besides "
        "https://sns.<region of the topic>.amazonaws.com/ (the sandbox's own, in tests).",
    )

    @model_validator(mode="before")
    @classmethod
    def _files(cls, data: Any) -> Any:
        if isinstance(data, dict):
            path = data.get("session_token_file")
            if path and not Path(path).exists():  # the Secret has no sessionToken key: long-term keys
                data = {k: v for k, v in data.items() if k != "session_token_file"}
            for name in ("sns_topic_arns", "sns_certificate_url_prefixes"):
                if name in data:
                    data[name] = _csv(data[name])
        return read_secret_files(data, ("access_key_id", "secret_access_key", "session_token"))

    def endpoint(self) -> str:
        """The API's base URL: base_url, else the region's public endpoint."""
        return (self.base_url or f"https://email.{self.region}.amazonaws.com").rstrip("/")


# ---- signing ----------------------------------------------------------------------------------
class SigV4(httpx.Auth):
    """Signs each request (every attempt afresh) with botocore's SigV4 signer. Only the headers we
    control are signed (host, content-type): the transport may add or change others."""

    requires_request_body = True

    def __init__(self, access_key: str, secret_key: str, token: str | None, region: str) -> None:
        self._signer = SigV4Auth(Credentials(access_key, secret_key, token or None), SERVICE, region)

    @classmethod
    def of(cls, settings: SesSettings) -> SigV4:
        token = secret(settings.session_token) or None
        return cls(settings.access_key_id or "", secret(settings.secret_access_key), token, settings.region or "")

    def sign(self, request: httpx.Request) -> None:
        headers = {"Content-Type": request.headers["content-type"]} if "content-type" in request.headers else {}
        aws = AWSRequest(method=request.method, url=str(request.url), data=request.content, headers=headers)
        self._signer.add_auth(aws)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in aws.headers:
                request.headers[name] = aws.headers[name]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request


# ---- the error table --------------------------------------------------------------------------
# Error shape -> (normalized, kind, retry hint seconds). SendEmail's own shapes (the sesv2 service
# model) first, then the errors every AWS JSON API may answer.
ERRORS: dict[str, http.Classified] = {
    "BadRequestException": (ErrorCode.PERMANENT_ERROR, P, None),  # invalid input
    "MessageRejected": (ErrorCode.PERMANENT_ERROR, P, None),  # this message's content / recipient
    "MailFromDomainNotVerifiedException": (ErrorCode.PERMANENT_ERROR, P, None),  # like SendGrid's 403 from
    "NotFoundException": (ErrorCode.PERMANENT_ERROR, P, None),  # configuration set, template, identity
    "AccountSuspendedException": (ErrorCode.ACCOUNT_SUSPENDED, P, None),  # permanently restricted
    # Paused (by the account owner, or by SES under review): resumable. Retried, counted against
    # the breaker so the channel's backup takes the traffic meanwhile.
    "SendingPausedException": (ErrorCode.ACCOUNT_SUSPENDED, T, 300.0),
    # The daily sending quota: retried later, and counted against the breaker (the backup sends).
    "LimitExceededException": (ErrorCode.QUOTA_EXCEEDED, T, 3600.0),
    "TooManyRequestsException": (ErrorCode.RATE_LIMIT_EXCEEDED, R, 1.0),  # over the sending rate
    "ThrottlingException": (ErrorCode.RATE_LIMIT_EXCEEDED, R, 1.0),
    "AccessDeniedException": (ErrorCode.AUTH_FAILED, P, None),
    "UnrecognizedClientException": (ErrorCode.AUTH_FAILED, P, None),
    "InvalidClientTokenId": (ErrorCode.AUTH_FAILED, P, None),
    "InvalidSignatureException": (ErrorCode.AUTH_FAILED, P, None),
    "SignatureDoesNotMatch": (ErrorCode.AUTH_FAILED, P, None),
    "IncompleteSignature": (ErrorCode.AUTH_FAILED, P, None),
    "MissingAuthenticationToken": (ErrorCode.AUTH_FAILED, P, None),
    "MissingAuthenticationTokenException": (ErrorCode.AUTH_FAILED, P, None),
    "IncompleteSignatureException": (ErrorCode.AUTH_FAILED, P, None),
    "ExpiredTokenException": (ErrorCode.AUTH_FAILED, P, None),
    "RequestExpired": (ErrorCode.TEMPORARY_ERROR, T, None),  # our clock, or a very late send: sign again
    "InternalFailure": (ErrorCode.TEMPORARY_ERROR, T, None),
    "ServiceUnavailable": (ErrorCode.TEMPORARY_ERROR, T, None),
}
# Answers about this one message or its recipient, never about SES's health: they never count
# against the circuit breaker (a bounce-like refusal of one address must not stop the channel).
RECIPIENT_ERRORS = frozenset({"MessageRejected"})
BAD_ADDRESS = re.compile(r"illegal address|missing final '@|invalid (?:email )?address|domain contains", re.I)


def error_type(response: httpx.Response, body: object) -> str | None:
    """The error shape's name, read as botocore reads rest-json errors: the x-amzn-ErrorType header,
    else `code` / `__type` in the body, without the `:namespace` suffix or `prefix#`."""
    raw = response.headers.get("x-amzn-errortype")
    if raw is None and isinstance(body, dict):
        raw = body.get("code") or body.get("Code") or body.get("__type")
    if not isinstance(raw, str) or not raw:
        return None
    return raw.split(":", 1)[0].rsplit("#", 1)[-1] or None


def classify(shape: str | None, http_status: int | None, text: str = "") -> http.Classified:
    """Normalized code, kind and hint of an error shape (or of the HTTP status alone)."""
    if shape == "BadRequestException" and BAD_ADDRESS.search(text):
        return ErrorCode.INVALID_EMAIL, P, None
    if shape is not None and shape in ERRORS:
        return ERRORS[shape]
    return http.by_status(http_status)


def normalize(response: httpx.Response) -> ProviderError:
    body = http.json_body(response)
    shape = error_type(response, body)
    message = (body.get("message") or body.get("Message")) if isinstance(body, dict) else None
    text = str(message or response.text[:500] or f"HTTP {response.status_code}")
    normalized, kind, hint = classify(shape, response.status_code, text)
    hint = http.retry_after(response.headers) or hint
    recipient = shape in RECIPIENT_ERRORS or normalized is ErrorCode.INVALID_EMAIL
    return http.error(
        kind,
        normalized,
        text,
        provider_code=shape or str(response.status_code),
        http_status=response.status_code,
        retry_after=hint,
        about_recipient=recipient,
    )


# ---- the request ------------------------------------------------------------------------------
def _content(data: str) -> dict[str, str]:
    return {"Data": data, "Charset": "UTF-8"}


def payload(settings: SesSettings, message: OutboundMessage) -> dict[str, Any]:
    """The SendEmail body for one message (one recipient)."""
    sender = settings.from_email or ""
    if settings.from_name:
        sender = email.utils.formataddr((settings.from_name, sender), "utf-8")
    body: dict[str, Any] = {
        "FromEmailAddress": sender,
        "Destination": {"ToAddresses": [message.to_recipient]},
        "EmailTags": [{"Name": OUR_ID, "Value": str(message.id)}],
    }
    if message.template_code:
        template = {"TemplateName": message.template_code, "TemplateData": json.dumps(message.template_params)}
        body["Content"] = {"Template": template}
    else:
        simple = {"Subject": _content(message.subject or ""), "Body": {"Text": _content(message.body or "")}}
        body["Content"] = {"Simple": simple}
    if settings.reply_to:
        body["ReplyToAddresses"] = [settings.reply_to]
    if settings.configuration_set_name:
        body["ConfigurationSetName"] = settings.configuration_set_name
    return body


class SesProvider:
    """Sends e-mail through the Amazon SES API v2."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: SesSettings,
        *,
        ambiguous_retry: float = 30.0,
        name: str = "ses",
    ) -> None:
        if not settings.access_key_id or settings.secret_access_key is None or not settings.region:
            raise ValueError("SES needs SES_ACCESS_KEY_ID, SES_SECRET_ACCESS_KEY (or _FILE) and SES_REGION")
        if not settings.from_email:
            raise ValueError("SES needs SES_FROM_EMAIL")
        self._client = client
        self._settings = settings
        self._url = settings.endpoint() + SEND_PATH
        self._auth = SigV4.of(settings)
        self._ambiguous_retry = ambiguous_retry
        self.name = name
        self.channels = frozenset({Channel.EMAIL})

    async def send(self, message: OutboundMessage) -> SendResult:
        content = json.dumps(payload(self._settings, message), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        request = self._client.build_request("POST", self._url, content=content, headers=headers)
        try:
            response = await http.send(
                self._client, request, label=LABEL, ambiguous_retry=self._ambiguous_retry, auth=self._auth
            )
            if response.status_code == 200:
                body = http.json_body(response)
                message_id = body.get("MessageId") if isinstance(body, dict) else None
                return SendResult(str(message_id) if message_id else None, 200, "accepted")
            raise normalize(response)
        except ProviderError as error:
            http.log_error(log, LABEL, error, message.id)
            raise

    async def aclose(self) -> None:
        await self._client.aclose()


def credentials_probe(settings: SesSettings) -> http.Probe:
    """`outbound check-provider`'s read-only call: GetAccount, whose sending must be enabled."""
    return http.Probe(settings.endpoint() + ACCOUNT_PATH, {}, SigV4.of(settings))


def credentials_verdict(body: dict[str, Any]) -> http.Verdict:
    if body.get("SendingEnabled") is not True:
        return http.Verdict(False, ErrorCode.ACCOUNT_SUSPENDED.value, "sending is not enabled for the account")
    status = body.get("EnforcementStatus")
    if status not in (None, "HEALTHY"):
        return http.Verdict(False, ErrorCode.ACCOUNT_SUSPENDED.value, f"enforcement status {status!r}")
    quota = body.get("SendQuota")
    quota = quota if isinstance(quota, dict) else {}
    mode = "production" if body.get("ProductionAccessEnabled") else "SES sandbox (verified recipients only)"
    detail = f"sending enabled, {mode}, max {quota.get('MaxSendRate', '?')}/s"
    return http.Verdict(True, "OK", detail)
