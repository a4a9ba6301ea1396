"""Sentry: off without a DSN; with one, error logs become events tagged as the runbook says, with
recipients scrubbed. Envelopes are captured by a local transport: nothing leaves the process."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from outbound_sender.logs import message_fields
from outbound_sender.observability.sentry import Scrubber, SentrySettings, secret_values, setup_sentry, tags_from_fields

DSN = "http://public@127.0.0.1:9/1"  # never contacted: the capture transport replaces the network
PHONE = "+15557770123"
EMAIL = "erin.recipient@example.net"
log = logging.getLogger("OutboundJobWorker")


class CaptureTransport(Transport):
    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> list[dict[str, Any]]:
        found = []
        for envelope in self.envelopes:
            event = envelope.get_event()
            if event is not None:
                found.append(dict(event))
        return found

    def raw(self) -> str:
        return b"".join(e.serialize() for e in self.envelopes).decode()


@pytest.fixture
def sentry_off(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    level = log.level
    log.setLevel(logging.INFO)
    yield
    log.setLevel(level)
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)
    sentry_sdk.get_isolation_scope().remove_tag("worker_type")


@pytest.fixture
def transport(sentry_off: None) -> CaptureTransport:
    capture = CaptureTransport()
    assert setup_sentry("OutboundJobWorker", SentrySettings(dsn=DSN), transport=capture)
    return capture


def failure_fields() -> dict[str, Any]:
    return message_fields(42, "corr-7", errorCode="INVALID_PHONE_NUMBER", channel="SMS", provider="twilio", to=PHONE)


@pytest.mark.usefixtures("sentry_off")
def test_without_a_dsn_sentry_stays_off() -> None:
    assert setup_sentry("OutboundJobWorker") is False
    assert not sentry_sdk.get_client().is_active()
    log.error("handleFailure: nothing to send", extra={"fields": failure_fields()})
    assert sentry_sdk.capture_message("nothing") is None


def test_settings_read_the_sdk_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_DSN", DSN)
    monkeypatch.setenv("SENTRY_ENVIRONMENT", "staging")
    settings = SentrySettings()
    assert settings.dsn == DSN
    assert settings.environment == "staging"


@pytest.mark.usefixtures("sentry_off")
@pytest.mark.parametrize("rate", ["1.0", "0.0"])
def test_environment_release_and_sample_rate_from_the_environment_reach_the_events(
    monkeypatch: pytest.MonkeyPatch, rate: str
) -> None:
    monkeypatch.setenv("SENTRY_DSN", DSN)
    monkeypatch.setenv("SENTRY_ENVIRONMENT", "staging-eu")
    monkeypatch.setenv("SENTRY_RELEASE", "outbound-sender@9.8.7")
    monkeypatch.setenv("SENTRY_SAMPLE_RATE", rate)
    capture = CaptureTransport()
    assert setup_sentry("OutboundJobWorker", transport=capture)  # the settings come from the environment
    for _ in range(5):
        log.error("handleFailure: The 'To' number is not valid", extra={"fields": failure_fields()})
    events = capture.events()
    if rate == "0.0":
        assert events == []  # every error event is sampled out
        return
    assert len(events) == 5
    assert {event["environment"] for event in events} == {"staging-eu"}
    assert {event["release"] for event in events} == {"outbound-sender@9.8.7"}


def test_error_log_becomes_a_tagged_event(transport: CaptureTransport) -> None:
    log.error("handleFailure: The 'To' number is not valid", extra={"fields": failure_fields()})
    (event,) = transport.events()
    assert event["tags"]["correlation_id"] == "corr-7"
    assert event["tags"]["channel"] == "SMS"
    assert event["tags"]["error_code"] == "INVALID_PHONE_NUMBER"
    assert event["tags"]["worker_type"] == "OutboundJobWorker"
    assert event["fingerprint"] == ["handleFailure", "SMS", "INVALID_PHONE_NUMBER"]
    assert event["level"] == "error"


def test_warnings_are_breadcrumbs_not_events(transport: CaptureTransport) -> None:
    log.warning("handleFailure: retrying", extra={"fields": failure_fields()})
    assert transport.events() == []


def test_recipients_are_scrubbed_from_messages_exceptions_locals_and_breadcrumbs(
    transport: CaptureTransport,
) -> None:
    log.info(f"OutboundJobWorker sending to {PHONE} and {EMAIL}")  # a breadcrumb of the next event
    recipient = PHONE  # a frame local variable

    try:
        raise ValueError(f"provider rejected {recipient} / {EMAIL}")
    except ValueError:
        log.exception(f"unexpected send error for {EMAIL}", extra={"fields": failure_fields()})
    raw = transport.raw()
    assert transport.events()
    for secret in (PHONE, PHONE[1:], EMAIL):
        assert secret not in raw
    assert "+*******0123" in raw
    assert "e***@example.net" in raw
    event = transport.events()[0]
    assert event["breadcrumbs"]["values"], "the INFO line travels as a breadcrumb"


def test_tags_come_from_either_spelling_of_the_fields() -> None:
    assert tags_from_fields({"correlationId": "a", "error_code": "X", "channel": None}) == {
        "correlation_id": "a",
        "error_code": "X",
    }


def test_secret_settings_are_read_from_the_environment_and_their_files(tmp_path: Path) -> None:
    token_file = tmp_path / "auth-token"
    token_file.write_text("file-held-token-123\n")
    environ = {
        "DATABASE_URL": "postgresql://outbound:db-pass-987@db:5432/outbound",
        "TWILIO_AUTH_TOKEN_FILE": str(token_file),
        "SENDGRID_API_KEY": "SG.sendgrid-key-value",
        "OUTBOUND_HTTP_PORT": "8080",
        "WHATSAPP_APP_SECRET": "short",  # too short to replace safely
    }
    found = secret_values(environ)
    assert {"db-pass-987", "file-held-token-123", "SG.sendgrid-key-value", environ["DATABASE_URL"]} <= found
    assert "8080" not in found
    assert "short" not in found


def test_scrubber_filters_credentials_by_name_and_in_text() -> None:
    scrub = Scrubber(["db-pass-987"])
    token = "obk_abcdefghijkl_" + "A" * 43
    event = {
        "request": {
            "headers": {"Authorization": f"Bearer {token}", "X-Hub-Signature-256": "sha256=ab12", "Accept": "*/*"},
            "query_string": "hub.mode=subscribe&hub.verify_token=vt-123&hub.challenge=9",
        },
        "extra": {"fields": {"to": "+15557770123", "note": f"key {token} db postgresql://u:db-pass-987@h/d"}},
        "breadcrumbs": {"values": [{"data": {"headers": [["cookie", "s=1"], ["accept", "json"]]}}]},
    }
    clean = scrub(event)
    headers = clean["request"]["headers"]
    assert headers == {"Authorization": "[Filtered]", "X-Hub-Signature-256": "[Filtered]", "Accept": "*/*"}
    assert "vt-123" not in clean["request"]["query_string"]
    assert clean["extra"]["fields"]["to"] == "[Filtered]"
    assert clean["extra"]["fields"]["note"] == "key obk_abcdefghijkl_[Filtered] db postgresql://u:[Filtered]@h/d"
    assert clean["breadcrumbs"]["values"][0]["data"]["headers"] == [["cookie", "[Filtered]"], ["accept", "json"]]
