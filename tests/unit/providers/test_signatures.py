"""Known-answer tests for the three webhook signature schemes, from the providers' own SDK tests
(twilio-python tests/unit/test_request_validator.py, sendgrid-python test/unit/test_eventwebhook.py)
and RFC 4231 (HMAC-SHA256 test case 2), plus round trips and tampering."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbound_sender.sandboxes import sendgrid as sendgrid_sandbox
from outbound_sender.sandboxes import whatsapp as whatsapp_sandbox
from outbound_sender.webhooks import sendgrid as sendgrid_webhook
from outbound_sender.webhooks import twilio as twilio_webhook
from outbound_sender.webhooks import whatsapp as whatsapp_webhook

TWILIO_TOKEN = "12345"
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
    ("Caller", "+14158675309"),
]


def test_twilio_known_answer() -> None:
    assert twilio_webhook.sign(TWILIO_TOKEN, TWILIO_URL, TWILIO_PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert twilio_webhook.verify(TWILIO_TOKEN, TWILIO_URL, TWILIO_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_twilio_known_answer_with_repeated_parameters() -> None:
    params = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert twilio_webhook.sign(TWILIO_TOKEN, TWILIO_URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


@pytest.mark.parametrize(
    ("url", "signature"),
    [
        (TWILIO_URL.replace(".com", ".com:1234"), "RSOYDt4T1cUTdK1PDd93/VVr8B8="),  # signed without port
        (TWILIO_URL, "kvajT1Ptam85bY51eRf/AJRuM3w="),  # signed with :443
        (TWILIO_URL.replace("https", "http"), "0ZXoZLH/DfblKGATFgpif+LLRf4="),  # signed with :80
    ],
)
def test_twilio_port_variants(url: str, signature: str) -> None:
    assert twilio_webhook.verify(TWILIO_TOKEN, url, TWILIO_PARAMS, signature)


def test_twilio_json_body_known_answer() -> None:
    body = b'{"property": "value", "boolean": true}'
    assert twilio_webhook.body_hash(body) == "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    url = TWILIO_URL + "&bodySHA256=" + twilio_webhook.body_hash(body)
    assert twilio_webhook.verify(TWILIO_TOKEN, url, [], "a9nBmqA0ju/hNViExpshrM61xv4=", json_body=body)
    assert not twilio_webhook.verify(TWILIO_TOKEN, url, [], "a9nBmqA0ju/hNViExpshrM61xv4=", json_body=body + b" ")


def test_twilio_tampering_fails() -> None:
    good = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert not twilio_webhook.verify(TWILIO_TOKEN, TWILIO_URL, [*TWILIO_PARAMS[:-1], ("Caller", "+1")], good)
    assert not twilio_webhook.verify("54321", TWILIO_URL, TWILIO_PARAMS, good)
    assert not twilio_webhook.verify(TWILIO_TOKEN, TWILIO_URL + "&x=1", TWILIO_PARAMS, good)
    assert not twilio_webhook.verify(TWILIO_TOKEN, TWILIO_URL, TWILIO_PARAMS, None)
    assert not twilio_webhook.verify("", TWILIO_URL, TWILIO_PARAMS, good)


def test_twilio_sha256_setting() -> None:
    assert twilio_webhook.hash_algorithm("key=abc, algorithm=HMAC_SHA256") == "sha256"
    assert twilio_webhook.hash_algorithm(None) == "sha1"
    signed = twilio_webhook.sign("k", TWILIO_URL, TWILIO_PARAMS, "sha256")
    assert twilio_webhook.verify("k", TWILIO_URL, TWILIO_PARAMS, signed, algorithm="sha256")
    assert not twilio_webhook.verify("k", TWILIO_URL, TWILIO_PARAMS, signed)


SENDGRID_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNN"
    "RaINXvVpiglSI8eNEc6wEA3F+g=="
)
SENDGRID_SIGNATURE = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
SENDGRID_TIMESTAMP = "1600112502"
SENDGRID_BODY = (
    json.dumps(
        [
            {
                "email": "hello@world.com",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
                "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
                "timestamp": 1600112492,
            }
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\r\n"
).encode()


def test_sendgrid_known_answer() -> None:
    assert sendgrid_webhook.verify(SENDGRID_KEY, SENDGRID_BODY, SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP)


def test_sendgrid_pem_key_is_accepted() -> None:
    pem = f"-----BEGIN PUBLIC KEY-----\n{SENDGRID_KEY}\n-----END PUBLIC KEY-----\n"
    assert sendgrid_webhook.verify(pem, SENDGRID_BODY, SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP)


@pytest.mark.parametrize(
    ("key", "body", "signature", "timestamp"),
    [
        (sendgrid_sandbox.verification_key(), SENDGRID_BODY, SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP),
        (SENDGRID_KEY, b"payload", SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP),
        (SENDGRID_KEY, SENDGRID_BODY, SENDGRID_SIGNATURE, "1600112503"),
        (SENDGRID_KEY, SENDGRID_BODY, "bm90IGEgc2lnbmF0dXJl", SENDGRID_TIMESTAMP),
        (SENDGRID_KEY, SENDGRID_BODY, "%%%not base64", SENDGRID_TIMESTAMP),
        ("not a key", SENDGRID_BODY, SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP),
        ("", SENDGRID_BODY, SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP),
        (SENDGRID_KEY, SENDGRID_BODY, None, SENDGRID_TIMESTAMP),
    ],
)
def test_sendgrid_rejects(key: str, body: bytes, signature: str | None, timestamp: str) -> None:
    assert not sendgrid_webhook.verify(key, body, signature, timestamp)


@given(st.binary(max_size=512), st.integers(min_value=0, max_value=2**40))
def test_sendgrid_sandbox_key_round_trip(body: bytes, timestamp: int) -> None:
    signature = sendgrid_webhook.sign(sendgrid_sandbox.signing_key(), body, str(timestamp))
    public = sendgrid_sandbox.verification_key()
    assert sendgrid_webhook.verify(public, body, signature, str(timestamp))
    assert not sendgrid_webhook.verify(public, body + b"x", signature, str(timestamp))


def test_meta_known_answer_rfc4231_case_2() -> None:
    expected = "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert whatsapp_webhook.sign("Jefe", b"what do ya want for nothing?") == expected
    assert whatsapp_webhook.verify("Jefe", b"what do ya want for nothing?", expected)


@given(st.binary(max_size=512), st.binary(min_size=1, max_size=8))
def test_meta_any_change_fails(body: bytes, extra: bytes) -> None:
    header = whatsapp_webhook.sign("secret", body)
    assert whatsapp_webhook.verify("secret", body, header)
    assert not whatsapp_webhook.verify("secret", body + extra, header)
    assert not whatsapp_webhook.verify("other", body, header)
    assert not whatsapp_webhook.verify("secret", body, header.removeprefix("sha256="))
    assert not whatsapp_webhook.verify("", body, header)


# Headers reach us as latin-1 text: a byte above 0x7f is a non-ASCII character, which
# hmac.compare_digest refuses (TypeError) instead of answering "no". Each must be a plain False.
NOT_ASCII = ["é", "sha256=é", "sha256=" + "é" * 64, "Ã©", "\x00", "\udcff", "ÿ" * 28]


@pytest.mark.parametrize("header", NOT_ASCII)
def test_a_signature_that_is_not_well_formed_is_refused_not_raised(header: str) -> None:
    body = b'{"entry": []}'
    assert not whatsapp_webhook.verify(whatsapp_sandbox.APP_SECRET, body, header)
    assert not twilio_webhook.verify(TWILIO_TOKEN, TWILIO_URL, TWILIO_PARAMS, header)
    assert not twilio_webhook.verify(TWILIO_TOKEN, TWILIO_URL, TWILIO_PARAMS, header, algorithm="sha256")
    json_url = f"{TWILIO_URL}&bodySHA256={header}"
    assert not twilio_webhook.verify(TWILIO_TOKEN, json_url, [], "a9nBmqA0ju/hNViExpshrM61xv4=", json_body=body)
    key = sendgrid_sandbox.verification_key()
    assert not sendgrid_webhook.verify(key, body, header, SENDGRID_TIMESTAMP)
    assert not sendgrid_webhook.verify(key, body, SENDGRID_SIGNATURE, header)


@given(header=st.text(max_size=80))
def test_any_header_text_gives_a_verdict(header: str) -> None:
    assert whatsapp_webhook.verify("secret", b"{}", header) in (True, False)
    assert twilio_webhook.verify("token", "https://h/p", [("a", header)], header) in (True, False)
    assert sendgrid_webhook.verify(sendgrid_sandbox.verification_key(), b"[]", header, header) in (True, False)
