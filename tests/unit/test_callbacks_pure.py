"""Delivery callbacks, the pure parts: signatures, the address rule, the retry schedule."""

from __future__ import annotations

import ipaddress

import pytest

from outbound_sender.callbacks import signing
from outbound_sender.callbacks.settings import CallbackSettings
from outbound_sender.callbacks.targets import RefusedTarget, is_public, parse

BODY = b'{"event":"SENT","event_id":1}'
NOW = 1_800_000_000


def test_a_signature_verifies_with_its_secret_only() -> None:
    secret = signing.new_secret()
    header = signing.signature_header([secret], NOW, BODY)
    assert signing.verify(header, BODY, secret, now=NOW + 10)
    assert not signing.verify(header, BODY + b" ", secret, now=NOW)
    assert not signing.verify(header, BODY, signing.new_secret(), now=NOW)
    assert not signing.verify(header, BODY, secret, now=NOW + 301)  # replayed too late
    assert not signing.verify("v1=" + signing.sign(secret, NOW, BODY), BODY, secret, now=NOW)  # no t=


def test_during_a_rotation_either_secret_verifies() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    header = signing.signature_header([new, old], NOW, BODY)
    assert header.count("v1=") == 2
    assert signing.verify(header, BODY, old, now=NOW)
    assert signing.verify(header, BODY, new, now=NOW)
    with pytest.raises(ValueError, match="no secret"):
        signing.signature_header([], NOW, BODY)


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/", "http://user:pw@example.com/", "https://example.com/#frag", "http:///path", "http://[::1"],
)
def test_urls_that_cannot_be_targets(url: str) -> None:
    with pytest.raises(RefusedTarget):
        parse(url)


def test_default_ports_and_host_case() -> None:
    assert parse("https://Hooks.Example.com/x") == ("https", "hooks.example.com", 443)
    assert parse("http://[2001:db8::1]:8080/x") == ("http", "2001:db8::1", 8080)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.9.8.7", False),
        ("172.31.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.1.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:93.184.216.34", True),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


def test_the_retry_schedule_doubles_up_to_its_cap_with_at_most_a_fifth_of_jitter() -> None:
    settings = CallbackSettings(retry_base_ms=5000, retry_max_ms=60_000)
    assert [settings.delay_seconds(n, 0.0) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert settings.delay_seconds(1, 0.999) == pytest.approx(4.001, abs=0.01)
    assert settings.delay_seconds(1000, 0.0) == 60
    with pytest.raises(ValueError, match="RETRY_BASE_MS"):
        CallbackSettings(retry_base_ms=10, retry_max_ms=5)
