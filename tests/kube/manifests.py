"""Builders of ChannelProvider and QuotaPolicy objects for tests, as plain Python data."""

from __future__ import annotations

import copy
from typing import Any

GROUP = "messaging.outbound.dev"
API_VERSION = f"{GROUP}/v1alpha1"
SAMPLES_DIR_NAME = "samples"

TWILIO_SPEC: dict[str, Any] = {
    "channel": "SMS",
    "provider": "twilio",
    "credentialsSecretRef": {"name": "twilio-credentials"},
    "twilio": {"from": "+15005550006"},
}
QUOTA_SPEC: dict[str, Any] = {"orgId": "acme", "tier": "Tier10K", "dailyLimit": 10000}


def channel_provider(name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ChannelProvider; the spec defaults to a valid Twilio SMS provider."""
    body = copy.deepcopy(TWILIO_SPEC if spec is None else spec)
    return {"apiVersion": API_VERSION, "kind": "ChannelProvider", "metadata": {"name": name}, "spec": body}


def quota_policy(name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """A QuotaPolicy; the spec defaults to a valid 10K-tier organisation quota."""
    body = copy.deepcopy(QUOTA_SPEC if spec is None else spec)
    return {"apiVersion": API_VERSION, "kind": "QuotaPolicy", "metadata": {"name": name}, "spec": body}


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7386) of ``patch`` onto a copy of ``base``: None deletes a key."""
    result = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result
