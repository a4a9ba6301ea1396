"""Sentry: off without a DSN; with one, error logs become events tagged as the runbook says, with
recipients scrubbed. Envelopes are captured by a local transport: nothing leaves the process."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from outbound_sender.logs import message_fields
from outbound_sender.observability.sentry import SentrySettings, setup_sentry, tags_from_fields

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
