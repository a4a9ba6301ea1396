"""The five webhook endpoints of a real `outbound api` process under generated, validly signed
bodies: well-formed shapes with hostile values (ids above 2^63, NUL, out-of-range timestamps, long
and non-ASCII text) and arbitrary JSON where objects are expected. No answer is a 5xx, and a
known-good event mixed into each generated batch (or a good callback with generated extra fields)
is always recorded."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import json
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import hypothesis
import pytest
import requests
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st

from outbound_sender.domain import Channel, NewMessage
from outbound_sender.embedded import free_port
from outbound_sender.providers.vonage import signature
from outbound_sender.sandboxes import sendgrid as sendgrid_sandbox
from outbound_sender.sandboxes import ses as ses_sandbox
from outbound_sender.sandboxes import twilio as twilio_sandbox
from outbound_sender.sandboxes import vonage as vonage_sandbox
from outbound_sender.sandboxes import whatsapp as whatsapp_sandbox
from outbound_sender.store import messages
from outbound_sender.store.db import connect
from outbound_sender.webhooks import sns
from tests.integration.providers.conftest import sendgrid_headers, twilio_headers, whatsapp_headers
from tests.processes import outbound, stop, wait_http

EXAMPLES = 400  # per endpoint
EDGE: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(
        [
            *(2**63, 2**63 - 1, 2**64, -1, 0, 10**20, -(10**20), "", "\x00", "a\x00b", "é", "\udcff", "x" * 3000),
            *("1750000000", "99999999999999999999", "sent", "delivered", "read", "failed", "bounce", "dropped"),
        ]
    ),
    st.integers(),
    st.text(max_size=40),
    st.floats(),
    st.booleans(),
    st.none(),
)
JSON: st.SearchStrategy[Any] = st.recursive(
    EDGE,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _object(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """An object with any subset of `fields` (generated values), or any JSON at all in its place."""
    return st.fixed_dictionaries({}, optional=fields) | JSON


WHATSAPP_STATUS = _object(
    id=EDGE,
    status=EDGE,
    timestamp=EDGE,
    recipient_id=EDGE,
    biz_opaque_callback_data=EDGE,
    errors=st.lists(_object(code=EDGE, title=EDGE, message=EDGE, error_data=_object(details=EDGE)), max_size=2) | JSON,
)
WHATSAPP_VALUE = _object(
    metadata=_object(phone_number_id=EDGE | st.just(whatsapp_sandbox.PHONE_NUMBER_ID)),
    statuses=st.lists(WHATSAPP_STATUS, max_size=4) | JSON,
)
WHATSAPP_ENTRY = _object(id=EDGE, changes=st.lists(_object(field=EDGE, value=WHATSAPP_VALUE), max_size=3) | JSON)
SENDGRID_EVENT = _object(
    event=EDGE,
    sg_event_id=EDGE,
    sg_message_id=EDGE,
    timestamp=EDGE,
    outbound_id=EDGE,
    reason=EDGE,
    response=EDGE,
    status=EDGE,
    type=EDGE,
)
SES_NAMES = st.sampled_from(["Send", "Delivery", "Bounce", "Complaint", "Reject", "DeliveryDelay", "Rendering Failure"])
SES_EVENT = _object(
    eventType=EDGE | SES_NAMES,
    notificationType=EDGE,
    mail=_object(messageId=EDGE, timestamp=EDGE, tags=_object(outbound_id=st.lists(EDGE, max_size=2) | JSON)),
    bounce=_object(
        bounceType=EDGE,
        bounceSubType=EDGE,
        timestamp=EDGE,
        bouncedRecipients=st.lists(_object(diagnosticCode=EDGE, status=EDGE), max_size=2) | JSON,
    ),
    delivery=_object(timestamp=EDGE),
    complaint=_object(complaintFeedbackType=EDGE, timestamp=EDGE),
    deliveryDelay=_object(delayType=EDGE, timestamp=EDGE),
    reject=_object(reason=EDGE),
    failure=_object(errorMessage=EDGE),
)
FORM_TEXT = EDGE.map(lambda value: str(value).encode("utf-8", "replace").decode())  # a form is UTF-8
TWILIO_FIELDS = st.dictionaries(
    st.sampled_from(["MessageSid", "SmsSid", "MessageStatus", "SmsStatus", "ErrorCode", "AccountSid"])
    | st.text(max_size=12).map(lambda name: name.encode("utf-8", "replace").decode()),
    FORM_TEXT,
    max_size=6,
)
VONAGE_FIELDS = st.dictionaries(
    st.sampled_from(["messageId", "status", "err-code", "client-ref", "api-key", "msisdn", "scts"])
    | st.text(max_size=12).map(lambda name: name.encode("utf-8", "replace").decode()),
    FORM_TEXT,
    max_size=6,
)


class Fuzz:
    """One endpoint's run: the answers seen and the good event ids that must be recorded."""

    def __init__(self, url: str, message_id: int) -> None:
        self.url = url
        self.message_id = message_id
        self.statuses: Counter[int] = Counter()
        self.good: set[tuple[str, str]] = set()
        self.session = requests.Session()

    def post(self, path: str, raw: bytes, headers: dict[str, str]) -> None:
        response = self.session.post(self.url + path, data=raw, headers=headers, timeout=30)
        self.statuses[response.status_code] += 1
        assert response.status_code == 200, (path, response.status_code, raw[:300])

    def good_id(self) -> str:
        return f"good-{len(self.good)}"


def _run(strategy: st.SearchStrategy[Any], send: Callable[[Any], None]) -> None:
    @given(case=strategy)
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        send(case)

    run()


def _whatsapp(fuzz: Fuzz, case: tuple[list[Any], int]) -> None:
    entries, where = case
    wamid = "wamid." + fuzz.good_id()
    good = {
        "id": wamid,
        "status": "delivered",
        "timestamp": "1750000000",
        "biz_opaque_callback_data": str(fuzz.message_id),
    }
    value = {"metadata": {"phone_number_id": whatsapp_sandbox.PHONE_NUMBER_ID}, "statuses": [good]}
    entries.insert(where % (len(entries) + 1), {"id": "W", "changes": [{"field": "messages", "value": value}]})
    raw = json.dumps({"object": "whatsapp_business_account", "entry": entries}).encode()
    fuzz.post("/whatsapp", raw, whatsapp_headers(raw))
    fuzz.good.add(("whatsapp", f"{wamid}:delivered"))


def _sendgrid(fuzz: Fuzz, case: tuple[list[Any], int]) -> None:
    batch, where = case
    event_id = fuzz.good_id()
    good = {"event": "delivered", "sg_event_id": event_id, "outbound_id": str(fuzz.message_id), "timestamp": 1}
    batch.insert(where % (len(batch) + 1), good)
    raw = json.dumps(batch).encode()
    fuzz.post("/sendgrid/events", raw, sendgrid_headers(raw))
    fuzz.good.add(("sendgrid", event_id))


def _twilio(fuzz: Fuzz, case: tuple[dict[str, str], str | None, bool]) -> None:
    """A generated callback; half of them are a good one with generated extra fields."""
    fields, outbound_id, good = case
    if good:
        sid = "SM" + fuzz.good_id()
        fields |= {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": twilio_sandbox.ACCOUNT_SID}
        outbound_id = str(fuzz.message_id)
    query = "" if outbound_id is None else "?" + urlencode({"outbound_id": outbound_id})
    url = f"{fuzz.url}/twilio/status{query}"
    fuzz.post(f"/twilio/status{query}", urlencode(fields).encode(), twilio_headers(url, fields))
    if good:
        fuzz.good.add(("twilio", f"{sid}:delivered"))


def _vonage(fuzz: Fuzz, case: tuple[dict[str, str], bool]) -> None:
    """A generated receipt, signed as Vonage signs it (fresh timestamp); half of them are a good one
    with generated extra fields."""
    fields, good = case
    message_id = "VG" + fuzz.good_id()
    if good:
        fields |= {
            "messageId": message_id,
            "status": "delivered",
            "client-ref": str(fuzz.message_id),
            "api-key": vonage_sandbox.API_KEY,
        }
    fields = {k: v for k, v in fields.items() if k != "sig"} | {"timestamp": str(int(time.time()))}
    fields["sig"] = signature(vonage_sandbox.SIGNATURE_SECRET, fields, "md5hash")
    headers = {"content-type": "application/x-www-form-urlencoded"}
    fuzz.post("/vonage/dlr", urlencode(fields).encode(), headers)
    if good:
        fuzz.good.add(("vonage", f"{message_id}:delivered"))


def _ses(fuzz: Fuzz, case: tuple[Any, bool], certificate_url: str) -> None:
    """A generated SES event in a Notification signed as SNS signs it; half of them are a good
    Delivery of our message instead."""
    event, good = case
    sns_id = str(uuid.uuid4())
    if good:
        tags = {"outbound_id": [str(fuzz.message_id)]}
        event = {"eventType": "Delivery", "mail": {"messageId": fuzz.good_id(), "tags": tags}, "delivery": {}}
    message = {
        "Type": "Notification",
        "MessageId": sns_id,
        "TopicArn": ses_sandbox.SNS_TOPIC_ARN,
        "Message": json.dumps(event),
        "Timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "SignatureVersion": "1",
        "SigningCertURL": certificate_url,
    }
    message["Signature"] = sns.sign(message, ses_sandbox.sns_signing_key())
    headers = {"content-type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"}
    fuzz.post("/ses/sns", json.dumps(message).encode(), headers)
    if good:
        fuzz.good.add(("ses", sns_id))


@pytest.fixture
def sns_certificate() -> Iterator[str]:
    """The URL of the certificate this process signs SNS messages with (what SigningCertURL names)."""
    pem = ses_sandbox.sns_certificate_pem()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", str(len(pem)))
            self.end_headers()
            self.wfile.write(pem)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/SimpleNotificationService-fuzz.pem"
    finally:
        server.shutdown()
        thread.join()


@pytest.fixture
def api_process(db_dsn: str, sns_certificate: str) -> Iterator[str]:
    """`outbound api` in live mode with the sandboxes' webhook secrets and accounts given explicitly."""
    port = free_port()
    env = {
        "DATABASE_URL": db_dsn,
        "OUTBOUND_PROVIDER_KIND": "live",
        "OUTBOUND_HTTP_HOST": "127.0.0.1",
        "OUTBOUND_HTTP_PORT": str(port),
        "OUTBOUND_API_RATE_LIMIT_PER_SECOND": "0",
        "OUTBOUND_API_ACCESS_LOG": "false",
        "OUTBOUND_LOG_LEVEL": "ERROR",
        "TWILIO_AUTH_TOKEN": twilio_sandbox.AUTH_TOKEN,
        "TWILIO_ACCOUNT_SID": twilio_sandbox.ACCOUNT_SID,
        "SENDGRID_WEBHOOK_PUBLIC_KEY": sendgrid_sandbox.verification_key(),
        "WHATSAPP_APP_SECRET": whatsapp_sandbox.APP_SECRET,
        "WHATSAPP_VERIFY_TOKEN": whatsapp_sandbox.VERIFY_TOKEN,
        "WHATSAPP_PHONE_NUMBER_ID": whatsapp_sandbox.PHONE_NUMBER_ID,
        "VONAGE_SIGNATURE_SECRET": vonage_sandbox.SIGNATURE_SECRET,
        "SES_SNS_TOPIC_ARNS": ses_sandbox.SNS_TOPIC_ARN,
        "SES_SNS_CERTIFICATE_URL_PREFIXES": sns_certificate.rsplit("/", 1)[0] + "/",
    }
    process = outbound("api", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz")
        yield url
    finally:
        assert stop(process) == 0
        assert process.stderr is not None
        errors = process.stderr.read().decode()
        assert "Traceback" not in errors, errors[-3000:]


async def _setup(dsn: str) -> dict[Channel, int]:
    conn = await connect(dsn)
    try:
        new = {
            c: NewMessage("org", c, "ada@example.com" if c is Channel.EMAIL else "+15557654321", body="x")
            for c in Channel
        }
        return {c: await messages.enqueue(conn, m) for c, m in new.items()}
    finally:
        await conn.close()


async def _recorded(dsn: str) -> set[tuple[str, str]]:
    conn = await connect(dsn)
    try:
        rows = await conn.fetch("SELECT provider, provider_event_id FROM outbound_delivery_event")
        return {(r["provider"], r["provider_event_id"]) for r in rows}
    finally:
        await conn.close()


@pytest.mark.timeout(900)
def test_generated_webhooks_never_answer_5xx_nor_lose_a_good_event(
    api_process: str, db_dsn: str, sns_certificate: str
) -> None:
    ids = asyncio.run(_setup(db_dsn))
    base = f"{api_process}/webhooks"
    runs = {
        "whatsapp": (
            Fuzz(base, ids[Channel.WHATSAPP]),
            _whatsapp,
            st.tuples(st.lists(WHATSAPP_ENTRY, max_size=4), st.integers(0, 9)),
        ),
        "sendgrid": (
            Fuzz(base, ids[Channel.EMAIL]),
            _sendgrid,
            st.tuples(st.lists(SENDGRID_EVENT, max_size=8), st.integers(0, 9)),
        ),
        "twilio": (
            Fuzz(base, ids[Channel.SMS]),
            _twilio,
            st.tuples(TWILIO_FIELDS, st.none() | FORM_TEXT, st.booleans()),
        ),
        "vonage": (Fuzz(base, ids[Channel.SMS]), _vonage, st.tuples(VONAGE_FIELDS, st.booleans())),
        "ses": (
            Fuzz(base, ids[Channel.EMAIL]),
            lambda fuzz, case: _ses(fuzz, case, sns_certificate),
            st.tuples(SES_EVENT, st.booleans()),
        ),
    }
    started = time.monotonic()
    for fuzz, send, strategy in runs.values():
        _run(strategy, lambda case, fuzz=fuzz, send=send: send(fuzz, case))  # type: ignore[misc]
    seconds = time.monotonic() - started
    recorded = asyncio.run(_recorded(db_dsn))
    for name, (fuzz, _, _) in runs.items():
        print(
            f"webhook fuzz {name}: {sum(fuzz.statuses.values())} requests, {dict(fuzz.statuses)}, {len(fuzz.good)} good"
        )
        assert sum(fuzz.statuses.values()) >= EXAMPLES
        assert fuzz.good, name
        assert fuzz.good <= recorded, sorted(fuzz.good - recorded)[:5]
    print(f"webhook fuzz: {seconds:.1f} s")
