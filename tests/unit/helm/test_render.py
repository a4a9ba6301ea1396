"""The default rendering and the main value combinations: what is created, how pods run, where
connection settings come from."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
import yaml

from .chart import CHART, FULLNAME, NAMESPACE, containers, env_of, is_hook, of_kind, one, pod_specs, render

API = f"{FULLNAME}-api"
OPERATOR = f"{FULLNAME}-operator"
CALLBACKS = f"{FULLNAME}-callbacks"
MIGRATE = f"{FULLNAME}-migrate"
SENDER_SA = f"{FULLNAME}-sender"
CONNECTION_VARIABLES = {"DATABASE_URL", "REDIS_URL", "OUTBOUND_OPERATOR_DATABASE_URL"}


@pytest.fixture(scope="module")
def default() -> list[Any]:
    return render()


def kinds(docs: list[Any]) -> set[tuple[str, str]]:
    return {(doc["kind"], doc["metadata"]["name"]) for doc in docs}


def test_default_renders_api_operator_rbac_and_the_migration_hook(default: list[Any]) -> None:
    assert kinds(default) == {
        ("Deployment", API),
        ("Service", API),
        ("Service", f"{API}-metrics"),
        ("PodDisruptionBudget", API),
        ("Deployment", CALLBACKS),
        ("PodDisruptionBudget", CALLBACKS),
        ("StatefulSet", OPERATOR),
        ("PodDisruptionBudget", OPERATOR),
        ("KopfPeering", OPERATOR),
        ("ServiceAccount", SENDER_SA),
        ("ServiceAccount", OPERATOR),
        ("Role", OPERATOR),
        ("RoleBinding", OPERATOR),
        ("ServiceAccount", MIGRATE),
        ("Job", MIGRATE),
    }


def test_no_secret_is_rendered_and_connections_come_from_secret_refs(default: list[Any]) -> None:
    assert not of_kind(default, "Secret")
    for where, container in containers(default):
        for name, item in env_of(container).items():
            if name in CONNECTION_VARIABLES:
                assert "value" not in item, f"{where}: {name} is inline"
            assert not re.search(r"(postgres(ql)?|redis)://", str(item.get("value", ""))), f"{where}: {name}"
        database = env_of(container).get("DATABASE_URL") or env_of(container)["OUTBOUND_OPERATOR_DATABASE_URL"]
        assert database["valueFrom"]["secretKeyRef"] == {"name": "outbound-database", "key": "url"}, where


def test_redis_is_a_secret_ref_only_when_configured(default: list[Any]) -> None:
    api = dict(containers(default))[f"Deployment/{API}/api"]
    assert "REDIS_URL" not in env_of(api)
    docs = render({"redis": {"existingSecret": "cache"}})
    api = dict(containers(docs))[f"Deployment/{API}/api"]
    assert env_of(api)["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "cache", "key": "url"}
    operator = dict(containers(docs))[f"StatefulSet/{OPERATOR}/operator"]
    assert env_of(operator)["OUTBOUND_OPERATOR_WORKER_REDIS_SECRET"]["value"] == "cache"


def test_the_webhook_public_url_reaches_the_operator_for_its_workers() -> None:
    """The workers send, so they ask the provider for the callback (Twilio's StatusCallback): the
    API's public webhook URL must reach them through the operator, not only the API pods."""
    url = "https://messaging.example.com/webhooks"
    docs = render({"api": {"webhookPublicUrl": url}})
    operator = dict(containers(docs))[f"StatefulSet/{OPERATOR}/operator"]
    assert env_of(operator)["OUTBOUND_OPERATOR_WORKER_WEBHOOK_PUBLIC_URL"]["value"] == url
    api = dict(containers(docs))[f"Deployment/{FULLNAME}-api/api"]
    assert env_of(api)["OUTBOUND_WEBHOOK_PUBLIC_URL"]["value"] == url


def test_every_pod_runs_non_root_read_only_without_capabilities_or_api_token(default: list[Any]) -> None:
    for where, spec in pod_specs(default):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] != 0, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        if "operator" not in where:
            assert spec["automountServiceAccountToken"] is False, where
    for where, container in containers(default):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["capabilities"] == {"drop": ["ALL"]}, where
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], where


def test_every_container_has_resources_and_long_running_ones_have_probes(default: list[Any]) -> None:
    for where, container in containers(default):
        assert container["resources"]["requests"].keys() >= {"cpu", "memory"}, where
        assert "memory" in container["resources"]["limits"], where
        if where.startswith("Deployment/"):
            assert {"startupProbe", "livenessProbe"} <= container.keys(), where
    api = dict(containers(default))[f"Deployment/{API}/api"]
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]
    assert env_of(api)["OUTBOUND_METRICS_PORT"] == {"name": "OUTBOUND_METRICS_PORT", "value": "9090"}


def test_api_service_on_8080_selects_the_api_pods(default: list[Any]) -> None:
    service = one(default, "Service", API)
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    pod_labels = one(default, "Deployment", API)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    operator_labels = one(default, "StatefulSet", OPERATOR)["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= operator_labels.items()


def test_metrics_have_their_own_cluster_internal_service(default: list[Any]) -> None:
    """The API Service (maybe a LoadBalancer) carries no metrics port; a ClusterIP one carries only it."""
    service = one(default, "Service", f"{API}-metrics")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = one(default, "Deployment", API)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    public = render({"api": {"service": {"type": "LoadBalancer"}, "metricsPort": 9100}})
    assert [p["name"] for p in one(public, "Service", API)["spec"]["ports"]] == ["http"]
    assert one(public, "Service", f"{API}-metrics")["spec"]["type"] == "ClusterIP"
    api = dict(containers(public))[f"Deployment/{API}/api"]
    assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in api["ports"]


def test_pdb_and_topology_spread_cover_the_api_pods(default: list[Any]) -> None:
    pdb = one(default, "PodDisruptionBudget", API)
    deployment = one(default, "Deployment", API)
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert pdb["spec"]["maxUnavailable"] == 1
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    assert all(c["labelSelector"] == deployment["spec"]["selector"] for c in spread)
    docs = render({"api": {"podDisruptionBudget": {"enabled": False}, "topologySpread": {"enabled": False}}})
    assert API not in [d["metadata"]["name"] for d in of_kind(docs, "PodDisruptionBudget")]
    assert "topologySpreadConstraints" not in one(docs, "Deployment", API)["spec"]["template"]["spec"]


def test_images_come_from_repository_and_tag_values(default: list[Any]) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    images = {where: c["image"] for where, c in containers(default)}
    assert images[f"Deployment/{API}/api"] == f"ghcr.io/outbound-messaging/outbound-sender:{app_version}"
    assert images[f"StatefulSet/{OPERATOR}/operator"] == f"ghcr.io/outbound-messaging/outbound-operator:{app_version}"
    digest = "sha256:" + "a" * 64
    docs = render(
        {
            "sender": {"image": {"repository": "registry.local:5000/sender", "tag": "1.2.3"}},
            "operator": {"image": {"repository": "registry.local/op", "digest": digest}},
        }
    )
    images = {where: c["image"] for where, c in containers(docs)}
    assert images[f"Deployment/{API}/api"] == "registry.local:5000/sender:1.2.3"
    assert images[f"Job/{MIGRATE}/migrate"] == "registry.local:5000/sender:1.2.3"
    assert images[f"StatefulSet/{OPERATOR}/operator"] == f"registry.local/op@{digest}"
    operator = dict(containers(docs))[f"StatefulSet/{OPERATOR}/operator"]
    assert env_of(operator)["OUTBOUND_OPERATOR_WORKER_IMAGE"]["value"] == "registry.local:5000/sender:1.2.3"


def test_operator_is_two_peered_replicas_with_distinct_priorities_and_a_budget(default: list[Any]) -> None:
    statefulset = one(default, "StatefulSet", OPERATOR)
    assert statefulset["spec"]["replicas"] == 2
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    pod = statefulset["spec"]["template"]["spec"]
    env = env_of(pod["containers"][0])
    assert env["OUTBOUND_OPERATOR_STANDALONE"]["value"] == "false"
    assert env["OUTBOUND_OPERATOR_PEERING_NAME"]["value"] == OPERATOR
    # kopf pauses replicas of equal priority: each pod's index is its own priority, its name its identity.
    index = "metadata.labels['apps.kubernetes.io/pod-index']"
    assert env["OUTBOUND_OPERATOR_PRIORITY"]["valueFrom"] == {"fieldRef": {"fieldPath": index}}
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["OUTBOUND_OPERATOR_NAMESPACES"]["value"] == NAMESPACE
    assert env["OUTBOUND_OPERATOR_WORKER_SERVICE_ACCOUNT"]["value"] == SENDER_SA
    assert env["OUTBOUND_OPERATOR_WORKER_DATABASE_SECRET"]["value"] == "outbound-database"
    assert pod["serviceAccountName"] == OPERATOR
    [preferred] = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert preferred["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    budget = one(default, "PodDisruptionBudget", OPERATOR)
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    peering = one(default, "KopfPeering", OPERATOR)
    assert peering["metadata"]["namespace"] == NAMESPACE


def test_peering_objects_follow_the_watched_namespaces_or_the_cluster() -> None:
    docs = render({"operator": {"watchNamespaces": ["team-a", "team-b"]}})
    assert sorted(p["metadata"]["namespace"] for p in of_kind(docs, "KopfPeering")) == ["team-a", "team-b"]
    docs = render({"operator": {"clusterWide": True}})
    assert not of_kind(docs, "KopfPeering")
    assert one(docs, "ClusterKopfPeering", OPERATOR)


def test_one_operator_replica_has_no_budget_and_an_own_affinity_replaces_the_default() -> None:
    affinity: dict[str, Any] = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    docs = render({"operator": {"replicas": 1, "affinity": affinity}})
    assert one(docs, "StatefulSet", OPERATOR)["spec"]["replicas"] == 1
    assert not [d for d in of_kind(docs, "PodDisruptionBudget") if d["metadata"]["name"] == OPERATOR]
    assert one(docs, "StatefulSet", OPERATOR)["spec"]["template"]["spec"]["affinity"] == affinity


def test_the_charts_pull_secrets_reach_the_operator_for_its_workers() -> None:
    docs = render({"imagePullSecrets": ["registry-a", "registry-b"]})
    operator = dict(containers(docs))[f"StatefulSet/{OPERATOR}/operator"]
    assert env_of(operator)["OUTBOUND_OPERATOR_WORKER_IMAGE_PULL_SECRETS"]["value"] == "registry-a,registry-b"
    default = env_of(dict(containers(render()))[f"StatefulSet/{OPERATOR}/operator"])
    assert default["OUTBOUND_OPERATOR_WORKER_IMAGE_PULL_SECRETS"]["value"] == ""


def test_migration_job_is_a_pre_install_and_pre_upgrade_hook(default: list[Any]) -> None:
    job = one(default, "Job", MIGRATE)
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    account = one(default, "ServiceAccount", MIGRATE)
    assert int(account["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == MIGRATE
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["args"] == ["migrate"]
    # Only the hook's own objects are hooks: everything else belongs to the release.
    assert {d["metadata"]["name"] for d in default if is_hook(d)} == {MIGRATE}
    assert not of_kind(render({"migrations": {"enabled": False}}), "Job")


def test_api_can_be_disabled_and_takes_its_settings_from_values() -> None:
    docs = render({"api": {"enabled": False}})
    assert not [d for d in docs if d["metadata"]["name"] == API]
    values = {"api": {"replicas": 4, "rateLimitPerSecond": 5, "envFromSecret": "webhooks", "logFormat": "json"}}
    deployment = one(render(values), "Deployment", API)
    assert deployment["spec"]["replicas"] == 4
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert env_of(container)["OUTBOUND_API_RATE_LIMIT_PER_SECOND"]["value"] == "5"
    assert env_of(container)["OUTBOUND_LOG_FORMAT"]["value"] == "json"
    assert container["envFrom"] == [{"secretRef": {"name": "webhooks"}}]


def test_the_callback_dispatcher_runs_beside_the_api_with_its_settings(default: list[Any]) -> None:
    """docs/callbacks.md: `outbound callbacks` is its own Deployment; the address rule reaches the
    dispatcher and the API alike (the API checks URLs at registration, the dispatcher at delivery)."""
    deployment = one(default, "Deployment", CALLBACKS)
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"] == ["callbacks"]
    assert pod["automountServiceAccountToken"] is False
    env = env_of(container)
    assert env["OUTBOUND_CALLBACKS_ALLOW_PRIVATE"]["value"] == "false"
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "outbound-database", "key": "url"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert one(default, "PodDisruptionBudget", CALLBACKS)["spec"]["selector"] == deployment["spec"]["selector"]

    values = {
        "callbacks": {"replicas": 1, "allowPrivateAddresses": True, "timeoutSeconds": 3, "maxAttempts": 7},
    }
    docs = render(values)
    env = env_of(one(docs, "Deployment", CALLBACKS)["spec"]["template"]["spec"]["containers"][0])
    assert (env["OUTBOUND_CALLBACKS_TIMEOUT_SECONDS"]["value"], env["OUTBOUND_CALLBACKS_MAX_ATTEMPTS"]["value"]) == (
        "3",
        "7",
    )
    api = env_of(one(docs, "Deployment", API)["spec"]["template"]["spec"]["containers"][0])
    assert (
        env["OUTBOUND_CALLBACKS_ALLOW_PRIVATE"]["value"] == api["OUTBOUND_CALLBACKS_ALLOW_PRIVATE"]["value"] == "true"
    )
    assert not of_kind([d for d in docs if d["metadata"]["name"] == CALLBACKS], "PodDisruptionBudget")  # one replica
    assert not [d for d in render({"callbacks": {"enabled": False}}) if d["metadata"]["name"] == CALLBACKS]


def test_api_tracing_is_off_unless_the_values_switch_it_on() -> None:
    """docs/tracing.md: the switch and the collector reach the API pods' environment, nothing else."""
    off = env_of(one(render(), "Deployment", API)["spec"]["template"]["spec"]["containers"][0])
    assert not {name for name in off if name.startswith(("OTEL_", "OUTBOUND_TRACING_"))}
    values = {"api": {"tracing": {"enabled": True, "otlpEndpoint": "http://otel-collector.observability:4318"}}}
    on = env_of(one(render(values), "Deployment", API)["spec"]["template"]["spec"]["containers"][0])
    assert on["OUTBOUND_TRACING_ENABLED"]["value"] == "true"
    assert on["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector.observability:4318"


def test_channel_providers_and_quota_policies_from_values() -> None:
    values: dict[str, Any] = {
        "channelProviders": {
            "twilio": {"channel": "SMS", "provider": "twilio", "credentialsSecretRef": {"name": "twilio-credentials"}},
            "sms-sandbox": {"channel": "SMS", "provider": "sandbox", "priority": 100},
        },
        "quotaPolicies": {"acme": {"orgId": "acme", "tier": "Tier10K", "dailyLimit": 9500}},
    }
    docs = render(values)
    providers = {d["metadata"]["name"]: d for d in of_kind(docs, "ChannelProvider")}
    assert providers.keys() == {"twilio", "sms-sandbox"}
    assert providers["twilio"]["spec"] == values["channelProviders"]["twilio"]
    assert providers["twilio"]["apiVersion"] == "messaging.outbound.dev/v1alpha1"
    [policy] = of_kind(docs, "QuotaPolicy")
    assert policy["spec"] == values["quotaPolicies"]["acme"]
    assert providers["twilio"]["metadata"]["annotations"] == {"argocd.argoproj.io/sync-wave": "1"}
    assert not of_kind(render(), "ChannelProvider")


def test_cleanup_hook_deletes_the_releases_resources_before_uninstall() -> None:
    """With custom resources in the release, a pre-delete hook deletes them while the operator can
    still remove its finalizer; its account may only list and delete those two kinds."""
    values = {"channelProviders": {"sms": {"channel": "SMS", "provider": "sandbox"}}}
    docs = render(values)
    cleanup = f"{FULLNAME}-cleanup"
    hooks = {(d["kind"], d["metadata"]["name"]): d for d in docs if is_hook(d) and d["metadata"]["name"] == cleanup}
    assert set(hooks) == {(kind, cleanup) for kind in ("ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Job")}
    assert {d["metadata"]["annotations"]["helm.sh/hook"] for d in hooks.values()} == {"pre-delete"}
    assert hooks[("Role", cleanup)]["rules"] == [
        {
            "apiGroups": ["messaging.outbound.dev"],
            "resources": ["channelproviders", "quotapolicies"],
            "verbs": ["list", "deletecollection"],
        }
    ]
    script = (CHART / "files" / "cleanup.py").read_text()
    assert hooks[("ConfigMap", cleanup)]["data"]["cleanup.py"].strip() == script.strip()
    pod = hooks[("Job", cleanup)]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == cleanup
    assert pod["containers"][0]["command"] == ["python", "/hook/cleanup.py"]
    assert env_of(pod["containers"][0])["RELEASE"]["value"] == "r"
    # Nothing to clean up: no hook (and none when the operator, which owns the finalizer, is off).
    assert not [d for d in render() if d["metadata"]["name"] == cleanup]
    assert not [
        d
        for d in render({**values, "api": {"enabled": True}, "operator": {"enabled": False}})
        if d["metadata"]["name"] == cleanup
    ]


def _start_api_with(
    container: dict[str, Any], monkeypatch: pytest.MonkeyPatch, command: str = "api", **secrets: str
) -> None:
    """`outbound <command>`'s start-up checks, on the rendered container's plain environment (+ ``secrets``)."""
    from outbound_sender import cli
    from outbound_sender.config import load_settings

    for name in [n for n in os.environ if n.startswith(("OUTBOUND_", "TWILIO_", "SENDGRID_", "WHATSAPP_"))]:
        monkeypatch.delenv(name)
    for item in container["env"]:
        if "value" in item:
            monkeypatch.setenv(item["name"], item["value"])
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    cli.preflight(load_settings(), command)


# The largest integers the schema lets through: helm prints numbers of a million and more as floats
# ("3.6e+06") unless the template converts them, and the sender refuses those for its integers.
LARGEST = {
    "api": {"rateLimitBurst": 1_000_000, "rateLimitPerSecond": 1_000_000, "poolSize": 200},
    "callbacks": {"maxAttempts": 100, "retryBaseMs": 3_600_000, "retryMaxMs": 86_400_000},
}


@pytest.mark.parametrize("values", [{}, LARGEST], ids=["defaults", "largest"])
def test_the_sender_pods_environment_is_read_by_the_sender(
    values: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API and callback dispatcher containers pass `outbound api` / `outbound callbacks`'s own
    settings checks with the values as rendered. The default retryMaxMs (3,600,000) rendered as
    "3.6e+06" once, and every dispatcher pod exited at start (found by the end-to-end run)."""
    docs = render(values)
    for name, command in ((API, "api"), (CALLBACKS, "callbacks")):
        container = one(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == [command]
        with monkeypatch.context() as patched:
            patched.setenv("DATABASE_URL", "postgresql://user:pass@db:5432/outbound")
            _start_api_with(container, patched, command)


def test_the_api_pods_start_in_live_mode_with_the_secrets_of_their_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image refuses to start without an explicit provider mode, and live mode without the secret
    of every webhook it accepts: the chart says live, and which webhooks the pods accept."""
    from outbound_sender.errors import ConfigError

    container = one(render(), "Deployment", API)["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["api"]
    assert env_of(container)["OUTBOUND_PROVIDER_KIND"]["value"] == "live"
    _start_api_with(container, monkeypatch)  # no webhook accepted, no secret needed
    values = {"api": {"webhookProviders": ["twilio", "whatsapp"], "envFromSecret": "webhooks"}}
    container = one(render(values), "Deployment", API)["spec"]["template"]["spec"]["containers"][0]
    assert env_of(container)["OUTBOUND_PROVIDERS_ENABLED"]["value"] == "twilio,whatsapp"
    with pytest.raises(ConfigError, match="missing: WHATSAPP_VERIFY_TOKEN"):
        _start_api_with(container, monkeypatch, TWILIO_AUTH_TOKEN="t", WHATSAPP_APP_SECRET="s")
    _start_api_with(container, monkeypatch, TWILIO_AUTH_TOKEN="t", WHATSAPP_APP_SECRET="s", WHATSAPP_VERIFY_TOKEN="v")


def test_the_hook_jobs_are_placed_where_their_components_run() -> None:
    """On a cluster whose nodes all carry taints, a hook Job without tolerations stays Pending and
    helm install (migrations) or uninstall (cleanup) waits for it until it times out."""
    toleration = {"key": "dedicated", "operator": "Equal", "value": "messaging", "effect": "NoSchedule"}
    values = {
        "migrations": {"tolerations": [toleration], "nodeSelector": {"pool": "messaging"}},
        "operator": {"tolerations": [toleration], "nodeSelector": {"pool": "control"}},
        "channelProviders": {"sms": {"channel": "SMS", "provider": "sandbox"}},
    }
    docs = render(values)
    migrate = one(docs, "Job", f"{FULLNAME}-migrate")["spec"]["template"]["spec"]
    cleanup = one(docs, "Job", f"{FULLNAME}-cleanup")["spec"]["template"]["spec"]
    assert (migrate["tolerations"], migrate["nodeSelector"]) == ([toleration], {"pool": "messaging"})
    # The cleanup hook runs the operator's image on behalf of the operator: the operator's placement.
    assert (cleanup["tolerations"], cleanup["nodeSelector"]) == ([toleration], {"pool": "control"})
    default = render({"channelProviders": values["channelProviders"]})
    for name in ("migrate", "cleanup"):
        spec = one(default, "Job", f"{FULLNAME}-{name}")["spec"]["template"]["spec"]
        assert "tolerations" not in spec
        assert "nodeSelector" not in spec
