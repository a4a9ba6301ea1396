"""Bad values fail `helm template`/`helm install` with a message naming the value; generated names
stay valid for any release name."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .chart import render, render_error

REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"api": {"replicas": -1}}, "/api/replicas"),
    ({"api": {"replica": 2}}, "additional properties 'replica' not allowed"),
    ({"database": {"existingSecret": ""}}, "/database/existingSecret"),
    ({"database": {"url": "postgresql://u:p@db/x"}}, "additional properties 'url' not allowed"),
    ({"sender": {"image": {"tag": "latest"}}}, "sender.image.tag=latest is not reproducible"),
    ({"operator": {"image": {"digest": "sha256:short"}}}, "/operator/image/digest"),
    ({"operator": {"workerImageRepositories": ["registry.local/sender:1"]}}, "/operator/workerImageRepositories/0"),
    ({"operator": {"watchNamespaces": ["Not_A_Namespace"]}}, "/operator/watchNamespaces/0"),
    ({"api": {"enabled": False}, "operator": {"enabled": False}}, "nothing to install"),
    ({"api": {"logFormat": "xml"}}, "/api/logFormat"),
    ({"api": {"metricsPort": 8080}}, "/api/metricsPort"),  # the API port never serves metrics
    ({"api": {"metricsPort": 80}}, "/api/metricsPort"),  # the pods run unprivileged
    ({"monitoring": {"runbookBaseUrl": "docs/runbook.md"}}, "/monitoring/runbookBaseUrl"),
    # ChannelProvider and QuotaPolicy specs are checked against the CRDs' schemas.
    ({"channelProviders": {"t": {"channel": "FAX", "provider": "twilio"}}}, "/channelProviders/t/channel"),
    ({"channelProviders": {"t": {"channel": "SMS"}}}, "missing property 'provider'"),
    (
        {"channelProviders": {"t": {"channel": "SMS", "provider": "twilio", "authToken": "x"}}},
        "additional properties 'authToken' not allowed",
    ),
    ({"channelProviders": {"Bad_Name": {"channel": "SMS", "provider": "sandbox"}}}, "invalid propertyName 'Bad_Name'"),
    ({"quotaPolicies": {"acme": {"orgId": "acme", "tier": "Tier5"}}}, "/quotaPolicies/acme/tier"),
]


@pytest.mark.parametrize(("values", "message"), REFUSED, ids=[m for _, m in REFUSED])
def test_bad_values_fail_with_a_message_naming_them(values: dict[str, Any], message: str) -> None:
    assert message in render_error(values)


DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
release_names = st.from_regex(r"\A[a-z]([-a-z0-9]{0,51}[a-z0-9])?\Z")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(release=release_names)
def test_object_names_are_valid_for_any_release_name(release: str) -> None:
    docs = render({"monitoring": {"serviceMonitor": {"enabled": True}}}, release=release)
    names = [doc["metadata"]["name"] for doc in docs]
    assert len(names) == len(set(zip(names, [d["kind"] for d in docs], strict=True)))
    for name in names:
        assert len(name) <= 63, name
        assert DNS_LABEL.match(name), name
