"""`Metrics.child`: the hot path's cached `labels()` children count into the same series."""

from __future__ import annotations

from prometheus_client import generate_latest

from outbound_sender.metrics import Metrics


def test_a_cached_child_is_the_series_labels_returns_and_counts_into_it() -> None:
    metrics = Metrics()
    sent = metrics.child(metrics.send_success, "SMS", "twilio")
    assert sent is metrics.child(metrics.send_success, "SMS", "twilio")
    assert sent is metrics.send_success.labels("SMS", "twilio")
    assert metrics.child(metrics.send_success, "SMS", "vonage") is not sent
    assert metrics.child(metrics.send_failure, "SMS", "none", "NO_PROVIDER") is not sent  # another metric
    sent.inc()
    metrics.child(metrics.send_success, "SMS", "twilio").inc()
    metrics.child(metrics.latency, "SMS").observe(0.2)
    text = generate_latest(metrics.registry).decode()
    assert 'outbound_message_send_success_total{channel="SMS",provider="twilio"} 2.0' in text
    assert 'outbound_message_delivery_latency_seconds_count{channel="SMS"} 1.0' in text
