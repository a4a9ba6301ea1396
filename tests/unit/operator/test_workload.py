"""Desired worker Deployment and ConfigMap from a ChannelProvider spec."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from outbound_operator.reconcile.spec import ChannelProviderSpec, EnvVar
from outbound_operator.reconcile.workload import CONFIG_HASH_ANNOTATION, env_refusal, label_value, workload
from outbound_operator.settings import OperatorSettings

SETTINGS = OperatorSettings(database_url="postgresql://x")
WHATSAPP = ChannelProviderSpec.of(
    {
        "channel": "WHATSAPP",
        "provider": "whatsapp",
        "credentialsSecretRef": {"name": "wa-secret", "keys": {"accessToken": "token"}},
        "whatsapp": {"phoneNumberId": "106540352242922", "apiVersion": "v21.0"},
        "scaling": {"replicas": {"min": 1, "max": 3, "managedBy": "External"}},
    }
)


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return result


def test_secret_is_mounted_never_read_and_files_are_named_by_their_keys() -> None:
    wl = workload("wa", WHATSAPP, SETTINGS, None)
    pod = wl.deployment["spec"]["template"]["spec"]
    assert pod["volumes"][:1] == [{"name": "credentials", "secret": {"secretName": "wa-secret", "defaultMode": 0o440}}]
    env = {e["name"]: e.get("value") for e in _container(wl.deployment)["env"]}
    assert env["WHATSAPP_ACCESS_TOKEN_FILE"].endswith("/token")
    assert env["WHATSAPP_APP_SECRET_FILE"].endswith("/appSecret")
    assert "wa-secret" not in str(wl.config_map)


def test_external_replicas_are_not_set_and_static_settings_are_in_the_configmap() -> None:
    wl = workload("wa", WHATSAPP, SETTINGS, None)
    assert "replicas" not in wl.deployment["spec"]
    assert wl.config_map["data"]["WHATSAPP_PHONE_NUMBER_ID"] == "106540352242922"
    assert wl.config_map["data"]["OUTBOUND_PROVIDER_KIND"] == "live"
    assert wl.config_map["data"]["OUTBOUND_PROVIDERS_ENABLED"] == "whatsapp"
    assert workload("wa", WHATSAPP, SETTINGS, 3).deployment["spec"]["replicas"] == 3


def test_grace_period_outlasts_the_worst_send_and_the_drain() -> None:
    wl = workload("wa", WHATSAPP, SETTINGS, 1)
    grace = wl.deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    drain = int(wl.config_map["data"]["OUTBOUND_WORKER_SHUTDOWN_GRACE_SECONDS"])
    assert SETTINGS.worst_send_seconds < drain < grace


def test_a_static_change_rolls_the_pods_through_the_config_hash() -> None:
    changed = WHATSAPP.model_copy(update={"sender": {"phoneNumberId": "1"}})
    a = workload("wa", WHATSAPP, SETTINGS, 1).deployment["spec"]["template"]["metadata"]["annotations"]
    b = workload("wa", changed, SETTINGS, 1).deployment["spec"]["template"]["metadata"]["annotations"]
    assert a[CONFIG_HASH_ANNOTATION] != b[CONFIG_HASH_ANNOTATION]
    assert a["prometheus.io/scrape"] == "true"


def test_label_values_fit_in_63_characters() -> None:
    long = "x" * 200
    assert len(label_value(long)) <= 63
    assert label_value(long) != label_value("x" * 199)
    assert label_value("short") == "short"


def test_every_worker_pod_names_its_provider_mode_and_passes_the_senders_start_up_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`outbound worker` refuses to start without OUTBOUND_PROVIDER_KIND: the operator always sets it."""
    from outbound_sender import cli
    from outbound_sender.config import load_settings

    sandbox = ChannelProviderSpec.of({"channel": "SMS", "provider": "sandbox", "endpoint": "http://sandbox:8090"})
    for spec, mode in ((WHATSAPP, "live"), (sandbox, "generic")):
        data = workload("p", spec, SETTINGS, 1).config_map["data"]
        assert data["OUTBOUND_PROVIDER_KIND"] == mode
        with monkeypatch.context() as env:
            for name in [n for n in os.environ if n.startswith(("OUTBOUND_", "WHATSAPP_", "TWILIO_", "SENDGRID_"))]:
                env.delenv(name)
            for name, value in data.items():
                env.setenv(name, value)
            cli.preflight(load_settings(), "worker")


PLACED = ChannelProviderSpec.of(
    {
        "channel": "SMS",
        "provider": "sandbox",
        "imagePullSecrets": [{"name": "team-registry"}],
        "nodeSelector": {"pool": "messaging"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "messaging", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]
                }
            }
        },
        "env": [
            {"name": "OUTBOUND_WORKER_POLL_INTERVAL_MS", "value": "500"},
            {"name": "SENTRY_DSN", "valueFrom": {"secretKeyRef": {"name": "sentry", "key": "dsn"}}},
        ],
        "logLevel": "DEBUG",
    }
)


def test_pull_secrets_placement_and_extra_env_reach_the_worker_pod() -> None:
    settings = OperatorSettings(database_url="postgresql://x", worker_image_pull_secrets="shared,team-registry")
    wl = workload("sms", PLACED, settings, 1)
    pod = wl.deployment["spec"]["template"]["spec"]
    # The operator's secrets first, then the ChannelProvider's, each once.
    assert pod["imagePullSecrets"] == [{"name": "shared"}, {"name": "team-registry"}]
    assert pod["nodeSelector"] == {"pool": "messaging"}
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "messaging", "effect": "NoSchedule"}
    ]
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    env = {e["name"]: e for e in _container(wl.deployment)["env"]}
    assert env["OUTBOUND_WORKER_POLL_INTERVAL_MS"] == {"name": "OUTBOUND_WORKER_POLL_INTERVAL_MS", "value": "500"}
    assert env["SENTRY_DSN"]["valueFrom"] == {"secretKeyRef": {"name": "sentry", "key": "dsn"}}
    assert wl.config_map["data"]["OUTBOUND_LOG_LEVEL"] == "DEBUG"


def test_a_spec_without_placement_renders_none_of_it_and_keeps_its_config_hash() -> None:
    plain = ChannelProviderSpec.of({"channel": "SMS", "provider": "sandbox"})
    pod = workload("sms", plain, SETTINGS, 1).deployment["spec"]["template"]["spec"]
    assert not {"imagePullSecrets", "nodeSelector", "tolerations", "affinity"} & set(pod)
    assert "OUTBOUND_LOG_LEVEL" not in workload("sms", plain, SETTINGS, 1).config_map["data"]
    debug = plain.model_copy(update={"log_level": "DEBUG"})
    hashes = {
        workload("sms", s, SETTINGS, 1).deployment["spec"]["template"]["metadata"]["annotations"][
            CONFIG_HASH_ANNOTATION
        ]
        for s in (plain, debug)
    }
    assert len(hashes) == 2  # a log level change rolls the pods


def test_extra_env_may_not_replace_what_the_operator_sets() -> None:
    from outbound_operator.reconcile.workload import env_refusal

    assert env_refusal("sms", PLACED, SETTINGS) is None
    for name in ("DATABASE_URL", "OUTBOUND_WORKER_BATCH_SIZE", "OUTBOUND_PROVIDER_NAME"):
        spec = PLACED.model_copy(update={"env": [*PLACED.env, EnvVar(name=name, value="x")]})
        refused = env_refusal("sms", spec, SETTINGS)
        assert refused is not None
        assert refused.reason == "EnvNotAllowed"
        assert name in refused.message


def test_every_worker_deployment_has_a_disruption_budget_of_one_pod_on_its_pods() -> None:
    wl = workload("wa", WHATSAPP, SETTINGS, 3)
    budget = wl.disruption_budget
    assert budget["kind"] == "PodDisruptionBudget"
    assert budget["apiVersion"] == "policy/v1"
    assert budget["metadata"]["name"] == "wa-sender"
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    pod_labels = wl.deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["selector"] == wl.deployment["spec"]["selector"]


# sample -> (the Secret's data, ConfigMap entries the sample's sender settings become)
BACKUP_SAMPLES: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "vonage": (
        {"apiKey": "5a5a5a5a", "apiSecret": "api-secret", "signatureSecret": "sig-secret"},
        {"VONAGE_FROM_NUMBER": "AcmeInc", "VONAGE_SIGNATURE_METHOD": "sha256"},
    ),
    "ses": (  # long-term keys: no sessionToken in the Secret, so its mounted file does not exist
        {"accessKeyId": "AKIA" + "5A" * 8, "secretAccessKey": "secret/access/key"},
        {
            "SES_REGION": "eu-west-1",
            "SES_FROM_EMAIL": "noreply@example.com",
            "SES_CONFIGURATION_SET_NAME": "outbound",
        },
    ),
}


@pytest.mark.parametrize("provider", BACKUP_SAMPLES)
def test_a_backup_channel_provider_renders_a_worker_that_sends_through_it(
    provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample's spec: the worker sends through that provider only, with its sender settings from
    the ConfigMap and its credentials from the mounted Secret's files, and the sender reads them all."""
    import httpx
    import yaml

    from outbound_sender.providers import registry

    entry = registry.entry(provider)
    assert entry.settings is not None
    assert entry.client is not None
    secret, expected = BACKUP_SAMPLES[provider]
    prefix = f"{provider.upper()}_"
    sample = yaml.safe_load(
        (Path(__file__).resolve().parents[3] / f"crds/samples/channelprovider-{provider}.yaml").read_text()
    )
    wl = workload(provider, ChannelProviderSpec.of(sample["spec"]), SETTINGS, None)
    data = wl.config_map["data"]
    assert data["OUTBOUND_PROVIDERS_ENABLED"] == provider
    assert expected.items() <= data.items()
    env = {e["name"]: e.get("value") for e in _container(wl.deployment)["env"]}
    files = {name: path for name, path in env.items() if name.startswith(prefix) and name.endswith("_FILE")}
    assert set(files) == {entry.variable(f"{field}_file") for field in entry.render.credentials.values()}
    for name in [n for n in os.environ if n.startswith(prefix)]:
        monkeypatch.delenv(name)
    for name, value in {**data, **{k: v for k, v in env.items() if v and not k.endswith("_FILE")}}.items():
        if name.startswith(prefix):
            monkeypatch.setenv(name, value)
    for name, path in files.items():  # the Secret's keys, mounted where the operator says
        key = path.rsplit("/", 1)[1]
        if key in secret:
            (tmp_path / key).write_text(secret[key] + "\n")
        monkeypatch.setenv(name, str(tmp_path / key))
    settings = entry.settings()
    for credential, field in entry.render.credentials.items():
        value = getattr(settings, field)
        text = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        assert text == secret.get(credential), credential
    entry.client(httpx.AsyncClient(), settings, registry.ClientOptions())  # enough to send: no ValueError


def test_resources_reach_the_worker_container() -> None:
    """spec.resources replaces the default requests and limits of the worker container as a whole."""
    resources = {"requests": {"cpu": "250m", "memory": "192Mi"}, "limits": {"memory": "384Mi"}}
    spec = ChannelProviderSpec.of({"channel": "SMS", "provider": "sandbox", "resources": resources})
    [container] = workload("p", spec, SETTINGS, 1).deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == resources
    [default] = workload(
        "p", ChannelProviderSpec.of({"channel": "SMS", "provider": "sandbox"}), SETTINGS, 1
    ).deployment["spec"]["template"]["spec"]["containers"]
    assert default["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}


def test_the_workers_ask_providers_to_call_back_at_the_public_webhook_url() -> None:
    """Twilio reports a message's status only to the StatusCallback sent with it (Vonage likewise):
    the worker that sends must know the webhook router's public URL, or no receipt ever comes."""
    twilio = ChannelProviderSpec.of(
        {"channel": "SMS", "provider": "twilio", "credentialsSecretRef": {"name": "twilio"}, "priority": 10}
    )
    url = "https://messaging.example.com/webhooks"
    settings = SETTINGS.model_copy(update={"worker_webhook_public_url": url})
    assert workload("sms", twilio, settings, 1).config_map["data"]["OUTBOUND_WEBHOOK_PUBLIC_URL"] == url
    # It is the operator's: a ChannelProvider may not point its receipts elsewhere through spec.env.
    elsewhere = twilio.model_copy(update={"env": [EnvVar(name="OUTBOUND_WEBHOOK_PUBLIC_URL", value="http://x")]})
    refusal = env_refusal("sms", elsewhere, settings)
    assert refusal is not None
    assert "OUTBOUND_WEBHOOK_PUBLIC_URL" in refusal.message
    # Unset (and for the generic sandbox, which has no webhooks): none, and the config hash is unchanged.
    assert "OUTBOUND_WEBHOOK_PUBLIC_URL" not in workload("sms", twilio, SETTINGS, 1).config_map["data"]
    generic = ChannelProviderSpec.of({"channel": "SMS", "provider": "sandbox", "endpoint": "http://sandbox:8090"})
    assert "OUTBOUND_WEBHOOK_PUBLIC_URL" not in workload("g", generic, settings, 1).config_map["data"]


def test_the_worker_user_can_read_its_mounted_credentials() -> None:
    """The Secret's files are mounted 0440 and owned by root: only the pod's fsGroup makes them the
    worker's group. Without it every live worker exits at start ("cannot read secret file ...:
    Permission denied"), as the end-to-end run on the test node showed."""
    pod = workload("wa", WHATSAPP, SETTINGS, 1).deployment["spec"]["template"]["spec"]
    mode = pod["volumes"][0]["secret"]["defaultMode"]
    context = pod["securityContext"]
    assert context["fsGroup"] == context["runAsGroup"]
    assert mode & 0o040  # readable by the group, which fsGroup is
    assert not mode & 0o004  # and by nobody else


def _processes(spec: ChannelProviderSpec) -> dict[str, Any] | None:
    env = {e["name"]: e for e in _container(workload("p", spec, SETTINGS, 1).deployment)["env"]}
    return env.get("OUTBOUND_WORKER_PROCESSES")


def test_the_worker_processes_follow_the_containers_cpu_limit_else_its_request() -> None:
    """Kubernetes rounds a resourceFieldRef up with divisor 1 (a 1500m limit -> 2 processes)."""

    def spec(resources: dict[str, Any] | None, env: list[dict[str, Any]] | None = None) -> ChannelProviderSpec:
        fields: dict[str, Any] = {"channel": "SMS", "provider": "sandbox", "env": env or []}
        return ChannelProviderSpec.of(fields | ({"resources": resources} if resources is not None else {}))

    def ref(resource: str) -> dict[str, Any]:
        field = {"containerName": "worker", "resource": resource, "divisor": "1"}
        return {"name": "OUTBOUND_WORKER_PROCESSES", "valueFrom": {"resourceFieldRef": field}}

    limited = {"requests": {"cpu": "1", "memory": "256Mi"}, "limits": {"cpu": "1500m", "memory": "512Mi"}}
    assert _processes(spec(limited)) == ref("limits.cpu")
    assert _processes(spec(None)) == ref("requests.cpu")  # the default resources: 100m -> 1
    assert _processes(spec({"limits": {"memory": "1Gi"}})) == {"name": "OUTBOUND_WORKER_PROCESSES", "value": "1"}
    overridden = spec(limited, [{"name": "OUTBOUND_WORKER_PROCESSES", "value": "3"}])
    assert _processes(overridden) == {"name": "OUTBOUND_WORKER_PROCESSES", "value": "3"}
    assert env_refusal("p", overridden, SETTINGS) is None


def test_the_worker_processes_share_a_writable_tmp_under_the_read_only_root() -> None:
    """Their metrics files go to the temp dir (prometheus_client multiprocess mode)."""
    deployment = workload(
        "p", ChannelProviderSpec.of({"channel": "SMS", "provider": "sandbox"}), SETTINGS, 1
    ).deployment
    container = _container(deployment)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in deployment["spec"]["template"]["spec"]["volumes"]
