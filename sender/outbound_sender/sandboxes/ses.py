"""Amazon SES API v2 sandbox, with the SNS topic its configuration set publishes events to.

    POST /v2/email/outbound-emails     SendEmail: JSON, SigV4 -> 200 {"MessageId"}
    GET  /v2/email/account             GetAccount (the credentials check)
    GET  /?Action=ConfirmSubscription  SNS: the SubscribeURL of the subscription handshake
    GET  /SimpleNotificationService-sandbox.pem   SNS: the certificate its messages are signed with

Every API call must carry a valid AWS Signature Version 4 (checked here independently of the
signer: canonical request, scope, key derivation, a 5-minute clock window, the session token of
temporary credentials). Errors answer as the service does: `x-amzn-ErrorType: <shape>:…` and
`{"message"}`. SendEmail's input is validated against botocore's sesv2 service model (required
members, types, lengths), then as SES does: addresses, the From identity verified, the
configuration set and template known, message tags, the SES sandbox (verified recipients only,
unless production_access), the sending rate (429) and the daily quota.

Accepted mail with a configuration set publishes SES events to the set's SNS topic, which POSTs
them to the subscribed endpoint (`send_webhooks_to`) signed as SNS signs (RSA, SignatureVersion
1 or 2, SigningCertURL on this server): first a SubscriptionConfirmation, and notifications only
once the endpoint has confirmed it, as SNS does. Events: Send, then Delivery, or for an
async:<name> rule the event of ASYNC_EVENTS.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import hashlib
import hmac
import re
import secrets
import time
import uuid
from functools import cache
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode

import orjson
from botocore.exceptions import ParamValidationError
from botocore.loaders import Loader
from botocore.model import OperationModel, ServiceModel
from botocore.validate import validate_parameters
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from outbound_sender.providers.ses import SesSettings
from outbound_sender.sandboxes.base import Reply, Request, Rule, SandboxApp, SandboxConfig, WebhookSandboxConfig
from outbound_sender.webhooks import sns

# The sandbox account: public test values in the real formats, valid only against this sandbox.
ACCESS_KEY_ID = "ASIA" + "5A5A" * 4  # temporary credentials: the session token is required
SECRET_ACCESS_KEY = "sandbox/Secret/AccessKey/5a5a5a5a5a5a5a5"
SESSION_TOKEN = "sandbox-session-token-" + "5a" * 24
REGION = "us-east-1"
FROM_EMAIL = "noreply@sandbox.example.com"
CONFIGURATION_SET = "outbound-sandbox"
ACCOUNT_ID = "123456789012"
SNS_TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:outbound-ses-events"

EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$"
)
TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)"
    r"/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)
MAX_SKEW = 300
CERT_PATH = "/SimpleNotificationService-sandbox.pem"
NOT_SIGNED = "The request signature we calculated does not match the signature you provided."
# Error shape -> (HTTP status, message), for error:<shape> rules and the sandbox's own checks.
ERRORS: dict[str, tuple[int, str]] = {
    "BadRequestException": (400, "Illegal address"),
    "MessageRejected": (400, "Email address is not verified. The following identities failed the check"),
    "MailFromDomainNotVerifiedException": (400, "The MAIL FROM domain is not verified."),
    "AccountSuspendedException": (400, "Your account has been suspended."),
    "SendingPausedException": (400, "Sending is paused for this account."),
    "NotFoundException": (404, "Configuration set does not exist."),
    "LimitExceededException": (400, "Daily message quota exceeded."),
    "TooManyRequestsException": (429, "Maximum sending rate exceeded."),
    "AccessDeniedException": (403, "User is not authorized to perform: ses:SendEmail"),
    "UnrecognizedClientException": (403, "The security token included in the request is invalid."),
    "InvalidSignatureException": (403, NOT_SIGNED),
    "MissingAuthenticationTokenException": (403, "Missing Authentication Token"),
    "InternalFailure": (500, "The request processing has failed because of an unknown error."),
    "ServiceUnavailable": (503, "Service is unable to handle request."),
}
# async:<name> -> the SES event that follows Send instead of Delivery.
ASYNC_EVENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "bounce": ("Bounce", {"bounceType": "Permanent", "bounceSubType": "General", "status": "5.1.1"}),
    "suppressed": ("Bounce", {"bounceType": "Permanent", "bounceSubType": "OnAccountSuppressionList"}),
    "transient": ("Bounce", {"bounceType": "Transient", "bounceSubType": "MailboxFull", "status": "4.2.2"}),
    "complaint": ("Complaint", {"complaintFeedbackType": "abuse"}),
    "reject": ("Reject", {"reason": "Bad content"}),
    "delay": ("DeliveryDelay", {"delayType": "MailboxFull", "status": "4.2.2"}),
    "rendering": ("Rendering Failure", {"errorMessage": "Attribute 'name' is not present in the rendering data."}),
}


@cache
def send_email_model() -> OperationModel:
    """SendEmail as the sesv2 service model that ships with botocore describes it."""
    service = ServiceModel(Loader().load_service_model("sesv2", "service-2"), "sesv2")
    return service.operation_model("SendEmail")


def default_rules() -> list[Rule]:
    return [
        Rule(pattern=r"^bounce@", action="async:bounce"),
        Rule(pattern=r"^unsubscribed@", action="async:suppressed"),
        Rule(pattern=r"^complaint@", action="async:complaint"),
        Rule(pattern=r"^rejected@", action="error:MessageRejected"),
        Rule(pattern=r"^error503@", action="http:503"),
        Rule(pattern=r"^ratelimit@", action="error:TooManyRequestsException"),
        Rule(pattern=r"^timeout@", action="timeout"),
    ]


class SesConfig(WebhookSandboxConfig):
    access_key_id: str = ACCESS_KEY_ID
    secret_access_key: str = SECRET_ACCESS_KEY
    session_token: str | None = SESSION_TOKEN  # None: long-term keys, no token
    region: str = REGION
    account_id: str = ACCOUNT_ID
    verified_identities: list[str] = [FROM_EMAIL]
    production_access: bool = True  # False: SES's own sandbox, verified recipients only
    sending_enabled: bool = True
    # configuration set -> the SNS topic its event destination publishes to (None: no events)
    configuration_sets: dict[str, str | None] = {CONFIGURATION_SET: SNS_TOPIC_ARN}
    templates: list[str] = ["welcome"]
    max_24_hour_send: int = 1_000_000
    signature_version: Literal["1", "2"] = "1"
    endpoint_url: str | None = None  # the subscribed HTTP(S) endpoint of every topic


def failure(shape: str, message: str | None = None, status: int | None = None) -> Reply:
    default_status, default_message = ERRORS.get(shape, (400, shape))
    headers = {
        "x-amzn-ErrorType": f"{shape}:http://internal.amazon.com/coral/com.amazonaws.sesv2/",
        "x-amzn-RequestId": str(uuid.uuid4()),
    }
    return Reply(status or default_status, {"message": message or default_message}, headers)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def canonical_request(request: Request, signed: list[str]) -> str:
    """SigV4's canonical request, written from the specification (not by the client's signer)."""
    query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(parse_qsl(request.query, keep_blank_values=True)))
    headers = "".join(f"{name}:{' '.join(request.headers.get(name, '').split())}\n" for name in signed)
    body_hash = hashlib.sha256(request.body).hexdigest()
    return "\n".join([request.method, quote(request.path, safe="/~"), query, headers, ";".join(signed), body_hash])


def signature(secret_key: str, amz_date: str, scope: tuple[str, str, str], canonical: str) -> str:
    date, region, service = scope
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            f"{date}/{region}/{service}/aws4_request",
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), date), region), service), "aws4_request")
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def verify_sigv4(request: Request, config: SesConfig, now: float | None = None) -> Reply | None:
    """None when the request is signed by the account's key, else SES's refusal."""
    header = request.headers.get("authorization")
    if not header:
        return failure("MissingAuthenticationTokenException")
    match = AUTHORIZATION.match(header)
    if match is None:
        return failure("IncompleteSignatureException", "Authorization header requires Credential, Signature", 400)
    if match["key"] != config.access_key_id:
        return failure("UnrecognizedClientException")
    if config.session_token is not None and request.headers.get("x-amz-security-token") != config.session_token:
        return failure("UnrecognizedClientException")
    if match["region"] != config.region:
        return failure("InvalidSignatureException", "Credential should be scoped to a valid region.")
    if match["service"] != "ses":
        return failure("InvalidSignatureException", "Credential should be scoped to correct service: 'ses'.")
    signed = match["signed"].split(";")
    amz_date = request.headers.get("x-amz-date", "")
    if "host" not in signed or "x-amz-date" not in signed or signed != sorted(signed):
        return failure("InvalidSignatureException", "'Host' and 'X-Amz-Date' must be signed headers.")
    try:
        moment = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return failure("IncompleteSignatureException", "X-Amz-Date is not in ISO 8601 basic format.", 400)
    if not amz_date.startswith(match["date"]) or abs((now or time.time()) - moment.timestamp()) > MAX_SKEW:
        return failure("InvalidSignatureException", f"Signature expired: {amz_date} is outside the 5-minute window.")
    scope = (match["date"], match["region"], match["service"])
    expected = signature(config.secret_access_key, amz_date, scope, canonical_request(request, signed))
    if not hmac.compare_digest(expected, match["signature"]):
        return failure("InvalidSignatureException")
    return None


def _address(text: str) -> str:
    return email.utils.parseaddr(text)[1]


def _verified(address: str, identities: list[str]) -> bool:
    return address in identities or address.rpartition("@")[2] in identities


def _addresses_error(body: dict[str, Any], config: SesConfig) -> Reply | None:
    recipients = list((body.get("Destination") or {}).get("ToAddresses") or [])
    for address in recipients:
        if "@" not in address:
            return failure("BadRequestException", "Missing final '@domain'")
        if not EMAIL.match(address):
            return failure("BadRequestException", "Illegal address")
    if not recipients:
        return failure("BadRequestException", "Missing required destination: at least one To address.")
    sender = _address(body.get("FromEmailAddress") or "")
    if not EMAIL.match(sender):
        return failure("BadRequestException", "Illegal address")
    failed = [sender] if not _verified(sender, config.verified_identities) else []
    if not config.production_access:
        failed += [a for a in recipients if not _verified(a, config.verified_identities)]
    if failed:
        region = config.region.upper()
        text = f"Email address is not verified. The following identities failed the check in region {region}: "
        return failure("MessageRejected", text + ", ".join(failed))
    return None


def _content_error(content: dict[str, Any], config: SesConfig) -> Reply | None:
    kinds = [k for k in ("Simple", "Raw", "Template") if k in content]
    if len(kinds) != 1:
        return failure("BadRequestException", "Exactly one of Simple, Raw or Template content is required.")
    template = content.get("Template")
    if template is not None:
        name = template.get("TemplateName")
        if not name:
            return failure("BadRequestException", "TemplateName is required.")
        if name not in config.templates:
            return failure("NotFoundException", f"Template {name} does not exist.")
        try:
            data = orjson.loads(template.get("TemplateData") or "{}")
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            return failure("BadRequestException", "TemplateData is not a JSON object.")
    return None


def validate(body: Any, config: SesConfig) -> Reply | None:
    """SES's refusal of this SendEmail body, or None."""
    if not isinstance(body, dict):
        return failure("BadRequestException", "The request body is not JSON.")
    try:
        shape = send_email_model().input_shape
        assert shape is not None
        validate_parameters(body, shape)
    except ParamValidationError as error:
        return failure("BadRequestException", str(error.kwargs.get("report", error)).strip())
    for tag in body.get("EmailTags") or []:
        if not TAG.match(tag["Name"]) or not TAG.match(tag["Value"]):
            return failure("BadRequestException", "Tag names and values may hold only letters, digits, '_' and '-'.")
    name = body.get("ConfigurationSetName")
    if name is not None and name not in config.configuration_sets:
        return failure("NotFoundException", f"Configuration set <{name}> does not exist.")
    return _addresses_error(body, config) or _content_error(body["Content"], config)


def _iso(moment: float) -> str:
    return (
        dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(moment * 1000) % 1000:03d}Z"
    )


class SesSandbox(SandboxApp):
    config_model = SesConfig
    name = "ses"
    config: SesConfig

    def __init__(self, config: SandboxConfig | None = None) -> None:
        super().__init__(config)
        self.sent_today = 0
        self.public_url = ""  # this server as clients reach it (SigningCertURL, SubscribeURL)
        self._tokens: dict[str, str] = {}  # pending subscription token -> endpoint
        self.subscribed: set[str] = set()  # confirmed endpoints
        self._handshake = asyncio.Lock()

    def default_config(self) -> SandboxConfig:
        return SesConfig(rules=default_rules())

    def send_webhooks_to(self, url: str | None) -> None:
        self.config.endpoint_url = url

    async def handle(self, request: Request) -> Reply:
        self.public_url = f"{request.scheme}://{request.host}"
        if request.method == "GET" and request.path == CERT_PATH:
            return Reply(200, sns_certificate_pem(), {"content-type": "application/x-pem-file"})
        if request.method == "GET" and request.path == "/" and "Action=" in request.query:
            return self.confirm(request.query_params())
        denied = verify_sigv4(request, self.config)
        if denied is not None:
            self.stats["auth_failed"] += 1
            return denied
        if (request.method, request.path) == ("POST", "/v2/email/outbound-emails"):
            return await self.send_email(request)
        if (request.method, request.path) == ("GET", "/v2/email/account"):
            return Reply(200, self.account())
        return failure("NotFoundException", f"No route {request.method} {request.path}", 404)

    def account(self) -> dict[str, Any]:
        config = self.config
        return {
            "SendingEnabled": config.sending_enabled,
            "ProductionAccessEnabled": config.production_access,
            "EnforcementStatus": "HEALTHY",
            "DedicatedIpAutoWarmupEnabled": False,
            "SendQuota": {
                "Max24HourSend": float(config.max_24_hour_send),
                "MaxSendRate": float(config.rate_per_second or 14),
                "SentLast24Hours": float(self.sent_today),
            },
            "SuppressionAttributes": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]},
        }

    async def send_email(self, request: Request) -> Reply:
        body = request.json()
        invalid = validate(body, self.config)
        if invalid is not None:
            self.stats["invalid"] += 1
            return invalid
        if not self.config.sending_enabled:
            return failure("SendingPausedException")
        if self.rate_limited():
            self.stats["rate_limited"] += 1
            return failure("TooManyRequestsException")
        if self.sent_today >= self.config.max_24_hour_send:
            self.stats["quota"] += 1
            return failure("LimitExceededException")
        await self.delay()
        return await self._outcome(body)

    async def _outcome(self, body: dict[str, Any]) -> Reply:
        recipient = body["Destination"]["ToAddresses"][0]
        kind, _, arg = (self.config.action_for(recipient) or "").partition(":")
        if kind == "error" and arg in ERRORS:
            self.record(f"error:{arg}", recipient)
            return failure(arg)
        if kind == "http":
            self.record(f"http:{arg}", recipient)
            status = int(arg or 500)
            return failure("ServiceUnavailable" if status == 503 else "InternalFailure", status=status)
        if kind == "timeout":
            self.record("timeout", recipient)
            await self.hold()
            return failure("ServiceUnavailable")
        self.record("accepted", recipient)
        self.sent_today += 1
        message_id = f"0100{int(time.time() * 1000):012x}-{uuid.uuid4()}-000000"
        self._publish(body, message_id, arg if kind == "async" else None)
        if kind == "slow":  # accepted, but the answer comes too late: an ambiguous send
            await self.hold()
        return Reply(200, {"MessageId": message_id})

    # ---- SNS ----------------------------------------------------------------------------------
    def _publish(self, body: dict[str, Any], message_id: str, failure_name: str | None) -> None:
        topic = self.config.configuration_sets.get(body.get("ConfigurationSetName") or "")
        url = self.config.endpoint_url
        if not topic or not url or not self.config.webhooks:
            return
        events: list[tuple[str, dict[str, Any]]] = [("Send", {})]
        if failure_name in ASYNC_EVENTS:
            events.append(ASYNC_EVENTS[failure_name])
        elif self.config.delivered:
            events.append(("Delivery", {"smtpResponse": "250 2.6.0 Message received"}))
        posts = [self._notification(url, topic, ses_event(body, message_id, n, d, self.config)) for n, d in events]
        self.webhooks.schedule(self.config.webhook_delay_ms / 1000, posts, ready=lambda: self._subscribed(url, topic))

    def _signed(self, message: dict[str, str]) -> dict[str, str]:
        message["SignatureVersion"] = self.config.signature_version
        message["SigningCertURL"] = self.public_url + CERT_PATH
        message["Signature"] = sns.sign(message, sns_signing_key(), self.config.signature_version)
        return message

    def _headers(self, message: dict[str, str]) -> dict[str, str]:
        return {
            "content-type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": message["Type"],
            "x-amz-sns-message-id": message["MessageId"],
            "x-amz-sns-topic-arn": message["TopicArn"],
            "user-agent": "Amazon Simple Notification Service Agent",
        }

    def _notification(self, url: str, topic: str, event: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
        message = {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": topic,
            "Message": orjson.dumps(event).decode(),
            "Timestamp": _iso(time.time()),
            "UnsubscribeURL": f"{self.public_url}/?Action=Unsubscribe&SubscriptionArn={topic}:{uuid.uuid4()}",
        }
        signed = self._signed(message)
        return url, orjson.dumps(signed), self._headers(signed)

    async def _subscribed(self, url: str, topic: str) -> bool:
        """SNS delivers to an endpoint only once it confirmed the subscription: the first delivery
        sends the SubscriptionConfirmation, and the endpoint confirms by GETting SubscribeURL."""
        async with self._handshake:
            if url in self.subscribed:
                return True
            token = secrets.token_hex(64)
            self._tokens[token] = url
            query = urlencode({"Action": "ConfirmSubscription", "TopicArn": topic, "Token": token})
            message = {
                "Type": "SubscriptionConfirmation",
                "MessageId": str(uuid.uuid4()),
                "Token": token,
                "TopicArn": topic,
                "Message": f"You have chosen to subscribe to the topic {topic}.\nTo confirm the subscription, "
                "visit the SubscribeURL included in this message.",
                "SubscribeURL": f"{self.public_url}/?{query}",
                "Timestamp": _iso(time.time()),
            }
            signed = self._signed(message)
            self.stats["subscription_confirmations"] += 1
            await self.webhooks.post_now(url, orjson.dumps(signed), self._headers(signed))
            return url in self.subscribed

    def confirm(self, query: dict[str, str]) -> Reply:
        url = self._tokens.pop(query.get("Token", ""), None)
        if query.get("Action") != "ConfirmSubscription" or url is None:
            xml = b"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidParameter</Code></Error></ErrorResponse>"
            return Reply(400, xml, {"content-type": "text/xml"})
        self.subscribed.add(url)
        arn = f"{query.get('TopicArn', '')}:{uuid.uuid4()}"
        answer = (
            "<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>"
            f"{arn}</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>"
        )
        return Reply(200, answer.encode(), {"content-type": "text/xml"})


def ses_event(
    body: dict[str, Any], message_id: str, name: str, detail: dict[str, Any], config: SesConfig
) -> dict[str, Any]:
    """One SES event as event publishing writes it: eventType, mail (with the message's tags),
    and the event's own object."""
    now = _iso(time.time())
    recipient = body["Destination"]["ToAddresses"][0]
    tags: dict[str, list[str]] = {t["Name"]: [t["Value"]] for t in body.get("EmailTags") or []}
    tags["ses:configuration-set"] = [body.get("ConfigurationSetName") or ""]
    mail = {
        "timestamp": now,
        "source": body.get("FromEmailAddress"),
        "sendingAccountId": config.account_id,
        "messageId": message_id,
        "destination": [recipient],
        "headersTruncated": False,
        "tags": tags,
    }
    event: dict[str, Any] = {"eventType": name, "mail": mail}
    if name == "Send":
        event["send"] = {}
    elif name == "Delivery":
        event["delivery"] = {"timestamp": now, "recipients": [recipient], "processingTimeMillis": 120, **detail}
    elif name == "Bounce":
        status = detail.get("status", "5.0.0")
        bounced = {"emailAddress": recipient, "action": "failed", "status": status, "diagnosticCode": f"smtp; {status}"}
        kinds = {k: v for k, v in detail.items() if k != "status"}
        event["bounce"] = {"timestamp": now, "feedbackId": str(uuid.uuid4()), "bouncedRecipients": [bounced], **kinds}
    elif name == "Complaint":
        event["complaint"] = {"timestamp": now, "complainedRecipients": [{"emailAddress": recipient}], **detail}
    elif name == "DeliveryDelay":
        delayed = {"emailAddress": recipient, "status": detail["status"], "diagnosticCode": "smtp; 452 4.2.2 full"}
        event["deliveryDelay"] = {"timestamp": now, "delayType": detail["delayType"], "delayedRecipients": [delayed]}
    elif name == "Reject":
        event["reject"] = detail
    else:
        event["failure"] = {"templateName": "welcome", **detail}
    return event


@cache
def sns_signing_key() -> rsa.RSAPrivateKey:
    """The sandbox SNS's signing key, made once per process: its certificate is served by the
    sandbox itself (SigningCertURL), so nothing needs to agree on it in advance."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def sns_certificate_pem() -> bytes:
    key = sns_signing_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.sandbox.invalid")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def account(base_url: str, **overrides: object) -> SesSettings:
    """The settings of the sandbox account: temporary credentials, its configuration set publishing
    to its SNS topic, and its own server trusted for the SNS signing certificate."""
    values: dict[str, object] = {
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key": SECRET_ACCESS_KEY,
        "session_token": SESSION_TOKEN,
        "region": REGION,
        "from_email": FROM_EMAIL,
        "configuration_set_name": CONFIGURATION_SET,
        "base_url": base_url,
        "sns_topic_arns": [SNS_TOPIC_ARN],
        "sns_certificate_url_prefixes": [base_url.rstrip("/") + "/"],
    }
    return SesSettings.model_validate({**values, **overrides})
