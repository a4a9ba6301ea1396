"""The ChannelProvider and QuotaPolicy CRDs on a real API server: install, samples, defaults,
status subresource, printer columns and the on-call patch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from outbound_sender.providers import registry

from .manifests import channel_provider, quota_policy
from .plane import CRDS_DIR, ControlPlane

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("crds")]

SAMPLES = sorted((CRDS_DIR / "samples").glob("*.yaml"))
NOW = "2026-01-02T03:04:05Z"


def _walk_properties(schema: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for name, child in schema.get("properties", {}).items():
        found.append((f"{path}.{name}", child))
        found += _walk_properties(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found.append((f"{path}[{key}]", schema[key]))
            found += _walk_properties(schema[key], f"{path}[{key}]")
    return found


def _schema(plane: ControlPlane, crd: str) -> dict[str, Any]:
    document = plane.kubectl_json("get", crd)
    schema: dict[str, Any] = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_crds_are_established_with_names_and_category(plane: ControlPlane, crds: list[str]) -> None:
    assert crds == ["crd/channelproviders.messaging.outbound.dev", "crd/quotapolicies.messaging.outbound.dev"]
    listing = plane.kubectl("api-resources", "--api-group=messaging.outbound.dev", "-o", "wide").stdout
    assert "channelproviders" in listing
    assert " cp " in listing
    assert " qp " in listing
    assert listing.count("outbound") >= 2


@pytest.mark.parametrize(
    "crd", ["crd/channelproviders.messaging.outbound.dev", "crd/quotapolicies.messaging.outbound.dev"]
)
def test_every_field_has_a_description(plane: ControlPlane, crd: str) -> None:
    fields = _walk_properties(_schema(plane, crd), "")
    missing = [path for path, child in fields if not child.get("description") and path != ".metadata"]
    assert len(fields) > 20
    assert missing == []


@pytest.mark.parametrize("sample", SAMPLES, ids=[path.stem for path in SAMPLES])
def test_sample_applies(plane: ControlPlane, namespace: str, sample: Path) -> None:
    created = plane.kubectl("apply", "-n", namespace, "-f", str(sample)).stdout
    assert "created" in created
    kind_name = created.split()[0]
    stored = plane.kubectl_json("get", kind_name, "-n", namespace)
    assert stored["metadata"]["namespace"] == namespace


def test_samples_cover_every_provider_and_a_quota_policy() -> None:
    names = {path.stem for path in SAMPLES}
    expected = {f"channelprovider-{name}" for name in registry.names()} | {"quotapolicy"}
    assert expected <= names


def test_channel_provider_defaults(plane: ControlPlane, namespace: str) -> None:
    plane.apply(channel_provider("minimal", {"channel": "EMAIL", "provider": "sandbox"}), namespace=namespace)
    spec = plane.kubectl_json("get", "cp", "minimal", "-n", namespace)["spec"]
    assert spec["enabled"] is True
    assert spec["priority"] == 100
    assert spec["circuitBreaker"] == {
        "mode": "Auto",
        "failureRateThreshold": 50,
        "window": "10m",
        "minimumRequests": 20,
        "coolDown": "60s",
        "halfOpenProbesPerMinute": 6,
    }
    assert spec["scaling"]["batchSize"] == {"min": 1, "max": 100, "initial": 10}
    assert spec["scaling"]["replicas"] == {"min": 1, "max": 5, "managedBy": "Operator"}
    assert spec["scaling"]["targetQueueDepthPerReplica"] == 1000


def test_quota_policy_defaults(plane: ControlPlane, namespace: str) -> None:
    plane.apply(quota_policy("minimal"), namespace=namespace)
    spec = plane.kubectl_json("get", "qp", "minimal", "-n", namespace)["spec"]
    assert spec["resetPeriod"] == "24h"
    assert spec["messagesPerSecond"] == 80
    assert spec["pairRateSeconds"] == 6
    assert spec["alertThresholds"] == [70, 85, 95]
    assert spec["urgentTemplates"] == ["urgent_alert", "appointment_reminder"]
    assert spec["fallbackChannel"] == "None"


def _patch_status(plane: ControlPlane, kind: str, name: str, namespace: str, body: dict[str, Any]) -> Any:
    patch = json.dumps(body)
    args = (
        "patch",
        kind,
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
        "-o",
        "json",
    )
    return json.loads(plane.kubectl(*args).stdout)


def _cp_status() -> dict[str, Any]:
    condition = {
        "type": "Ready",
        "status": "True",
        "observedGeneration": 1,
        "lastTransitionTime": NOW,
        "reason": "WorkersReady",
        "message": "2 of 2 workers ready",
    }
    return {
        "observedGeneration": 1,
        "conditions": [condition],
        "circuit": {"state": "Closed", "since": NOW, "reason": "FailureRateBelowThreshold"},
        "successRatePercent": 99.5,
        "requestsInWindow": 4200,
        "queueDepth": 1234,
        "batchSize": 20,
        "replicas": 2,
        "readyReplicas": 2,
        "observedAt": NOW,
    }


def test_status_subresource_keeps_status(plane: ControlPlane, namespace: str) -> None:
    plane.apply(channel_provider("twilio"), namespace=namespace)
    _patch_status(plane, "cp", "twilio", namespace, {"status": _cp_status()})
    stored = plane.kubectl_json("get", "cp", "twilio", "-n", namespace)
    assert stored["status"] == _cp_status()


def test_spec_written_through_status_is_ignored(plane: ControlPlane, namespace: str) -> None:
    plane.apply(channel_provider("twilio"), namespace=namespace)
    body = {"spec": {"enabled": False}, "status": {"queueDepth": 7}}
    returned = _patch_status(plane, "cp", "twilio", namespace, body)
    assert returned["spec"]["enabled"] is True
    assert returned["status"]["queueDepth"] == 7
    assert returned["metadata"]["generation"] == 1


def test_status_written_through_main_resource_is_ignored(plane: ControlPlane, namespace: str) -> None:
    plane.apply(channel_provider("twilio"), namespace=namespace)
    patch = json.dumps({"status": {"queueDepth": 99}})
    plane.kubectl("patch", "cp", "twilio", "-n", namespace, "--type=merge", "-p", patch)
    assert "status" not in plane.kubectl_json("get", "cp", "twilio", "-n", namespace)


def test_quota_policy_status_subresource(plane: ControlPlane, namespace: str) -> None:
    plane.apply(quota_policy("acme"), namespace=namespace)
    status = {"used": 7100, "remaining": 2900, "resetAt": NOW, "throttledUntil": NOW, "observedGeneration": 1}
    warning = {"type": "QuotaWarning", "status": "True", "lastTransitionTime": NOW}
    status["conditions"] = [{**warning, "reason": "AboveThreshold70", "message": "71% of the daily limit used"}]
    _patch_status(plane, "qp", "acme", namespace, {"status": status})
    assert plane.kubectl_json("get", "qp", "acme", "-n", namespace)["status"] == status
    table = plane.kubectl("get", "quotapolicies", "-n", namespace).stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "ORG",
        "TIER",
        "LIMIT",
        "USED",
        "REMAINING",
        "RESET",
        "AGE",
    ]
    assert table[1].split()[:6] == ["acme", "acme", "Tier10K", "10000", "7100", "2900"]


def test_printer_columns(plane: ControlPlane, namespace: str) -> None:
    plane.apply(channel_provider("twilio"), namespace=namespace)
    _patch_status(plane, "cp", "twilio", namespace, {"status": _cp_status()})
    table = plane.kubectl("get", "channelproviders", "-n", namespace).stdout.splitlines()
    header = ["NAME", "CHANNEL", "PROVIDER", "ENABLED", "CIRCUIT", "SUCCESS", "QUEUE", "BATCH", "READY", "AGE"]
    assert table[0].split() == header
    assert table[1].split()[:9] == ["twilio", "SMS", "twilio", "true", "Closed", "99.5", "1234", "20", "True"]
    wide = plane.kubectl("get", "cp", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-3:] == ["PRIORITY", "REPLICAS", "AGE"]


def test_category_lists_both_kinds(plane: ControlPlane, namespace: str) -> None:
    plane.apply([channel_provider("twilio"), quota_policy("acme")], namespace=namespace)
    names = plane.kubectl("get", "outbound", "-n", namespace, "-o", "name").stdout.split()
    group = "messaging.outbound.dev"
    assert sorted(names) == [f"channelprovider.{group}/twilio", f"quotapolicy.{group}/acme"]


def test_force_open_patch_is_accepted(plane: ControlPlane, namespace: str) -> None:
    plane.apply(channel_provider("twilio"), namespace=namespace)
    patch = '{"spec":{"circuitBreaker":{"mode":"ForceOpen"}}}'
    result = plane.kubectl("patch", "channelprovider", "twilio", "-n", namespace, "--type", "merge", "-p", patch)
    assert "patched" in result.stdout
    stored = plane.kubectl_json("get", "channelprovider", "twilio", "-n", namespace)
    assert stored["spec"]["circuitBreaker"]["mode"] == "ForceOpen"
    assert stored["spec"]["circuitBreaker"]["failureRateThreshold"] == 50
    assert stored["metadata"]["generation"] == 2


def test_kubectl_wait_for_ready_condition(plane: ControlPlane, namespace: str) -> None:
    plane.apply(channel_provider("twilio"), namespace=namespace)
    _patch_status(plane, "cp", "twilio", namespace, {"status": _cp_status()})
    result = plane.kubectl("wait", "cp/twilio", "-n", namespace, "--for=condition=Ready", "--timeout=10s")
    assert "condition met" in result.stdout


def test_invalid_condition_is_rejected(plane: ControlPlane, namespace: str) -> None:
    plane.apply(channel_provider("twilio"), namespace=namespace)
    bad = {"type": "Ready", "status": "Yes", "lastTransitionTime": NOW, "reason": "x", "message": ""}
    patch = json.dumps({"status": {"conditions": [bad]}})
    args = ("patch", "cp", "twilio", "-n", namespace, "--subresource=status", "--type=merge", "-p", patch)
    result = plane.kubectl(*args, check=False)
    assert result.returncode != 0
    assert 'status.conditions[0].status: Unsupported value: "Yes"' in result.stderr
