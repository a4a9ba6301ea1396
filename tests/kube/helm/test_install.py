"""`helm install`, `helm upgrade` and `helm uninstall` of the chart on the real API server.

No kubelet runs, so pods stay Pending and Jobs never finish on their own: the release tests install
with --no-hooks, and the hook test completes the migration Job's status by hand, as a kubelet and
the Job controller would after `outbound migrate` exited 0.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.kube.plane import ControlPlane
from tests.unit.helm.chart import KUBE_VERSION, render_text

from .support import exists, helm, helm_with_hook, objects_of, release_args, uninstall

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("crds")]

PROVIDERS: dict[str, Any] = {
    "sms-sandbox": {"channel": "SMS", "provider": "sandbox", "priority": 100, "endpoint": "http://sandbox:8025"},
    "twilio": {
        "channel": "SMS",
        "provider": "twilio",
        "priority": 10,
        "credentialsSecretRef": {"name": "twilio-credentials"},
        "twilio": {"messagingServiceSid": "MG0123456789abcdef0123456789abcdef"},
    },
}
POLICIES: dict[str, Any] = {"acme": {"orgId": "acme", "tier": "Tier10K", "dailyLimit": 9500}}


def release_name() -> str:
    return f"om-{secrets.token_hex(3)}"


def expected_objects(release: str, providers: list[str]) -> set[tuple[str, str]]:
    full = f"{release}-outbound-messaging"
    return {
        ("Deployment", f"{full}-api"),
        ("Service", f"{full}-api"),
        ("Service", f"{full}-api-metrics"),
        ("PodDisruptionBudget", f"{full}-api"),
        ("Deployment", f"{full}-callbacks"),
        ("PodDisruptionBudget", f"{full}-callbacks"),
        ("StatefulSet", f"{full}-operator"),
        ("PodDisruptionBudget", f"{full}-operator"),
        ("KopfPeering", f"{full}-operator"),
        ("ServiceAccount", f"{full}-sender"),
        ("ServiceAccount", f"{full}-operator"),
        ("Role", f"{full}-operator"),
        ("RoleBinding", f"{full}-operator"),
        ("QuotaPolicy", "acme"),
        *(("ChannelProvider", name) for name in providers),
    }


def test_install_upgrade_uninstall_leave_no_orphans(plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    release = release_name()
    values: dict[str, Any] = {"channelProviders": PROVIDERS, "quotaPolicies": POLICIES}
    installed = helm(plane, "install", *release_args(release, namespace, tmp_path, values), "--no-hooks")
    assert objects_of(plane, namespace, release) == expected_objects(release, ["sms-sandbox", "twilio"])
    assert f"kubectl -n {namespace} wait channelprovider --all --for=condition=Ready" in installed.stdout  # NOTES

    values = {"channelProviders": {"sms-sandbox": PROVIDERS["sms-sandbox"]}, "quotaPolicies": POLICIES}
    values["api"] = {"replicas": 3}
    helm(plane, "upgrade", *release_args(release, namespace, tmp_path, values), "--no-hooks")
    assert objects_of(plane, namespace, release) == expected_objects(release, ["sms-sandbox"])
    api = plane.kubectl_json("get", "deployment", f"{release}-outbound-messaging-api", "-n", namespace)
    assert api["spec"]["replicas"] == 3
    assert plane.kubectl_json("get", "deployment", "-n", namespace)["items"], "upgrade kept the Deployments"

    uninstall(plane, namespace, release, tmp_path)  # with its pre-delete hook: the CRs go first
    assert objects_of(plane, namespace, release) == set()
    assert not exists(plane, namespace, "job", f"{release}-outbound-messaging-cleanup")
    assert helm(plane, "list", "-n", namespace, "-q").stdout.strip() == ""


def test_migration_hook_runs_before_the_release_and_is_removed_after_success(
    plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    release = release_name()
    full = f"{release}-outbound-messaging"
    job = f"{full}-migrate"

    def migration_pod() -> None:
        # Pre-install: only the hook's own objects exist while the migration runs.
        assert objects_of(plane, namespace, release) == {("Job", job), ("ServiceAccount", job)}
        spec = plane.kubectl_json("get", "job", job, "-n", namespace)["spec"]["template"]["spec"]
        assert spec["containers"][0]["args"] == ["migrate"]

    helm_with_hook(plane, namespace, job, migration_pod, "install", *release_args(release, namespace, tmp_path, {}))
    assert ("Deployment", f"{full}-api") in objects_of(plane, namespace, release)
    # hook-succeeded: the Job and its ServiceAccount are gone once the migration succeeded.
    assert not exists(plane, namespace, "job", f"{full}-migrate")
    assert not exists(plane, namespace, "serviceaccount", f"{full}-migrate")
    helm(plane, "uninstall", release, "-n", namespace)


def test_rendered_manifests_pass_server_side_dry_run(
    plane: ControlPlane, namespace: str, monitoring_crds: None
) -> None:
    """Every object of the fullest rendering, hooks included, is accepted by the API server with
    strict field validation (unknown or duplicate fields are errors, not warnings)."""
    values: dict[str, Any] = {
        "channelProviders": PROVIDERS,
        "quotaPolicies": POLICIES,
        "redis": {"existingSecret": "outbound-redis"},
        "api": {"envFromSecret": "webhooks", "extraEnv": [{"name": "OUTBOUND_API_KEY_CACHE_SECONDS", "value": "5"}]},
        "operator": {"watchNamespaces": [namespace]},
        "networkPolicy": {"enabled": True},
        "monitoring": {
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "grafanaDashboard": {"enabled": True, "folder": "Messaging"},
        },
    }
    manifests = render_text(values, release="dry", namespace=namespace)
    result = plane.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-", stdin=manifests, check=False
    )
    assert result.returncode == 0, result.stderr
    applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == manifests.count("\nkind: "), result.stdout
    assert KUBE_VERSION.startswith("v1.")
