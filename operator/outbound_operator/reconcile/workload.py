"""Desired worker Deployment and static ConfigMap of a ChannelProvider (pure: spec -> manifests).

The ConfigMap carries static settings as environment variables (envFrom); its hash is a pod
template annotation, so a change of static settings rolls the pods while runtime settings
(enabled, circuit, batch size) travel through provider_control without a restart. Credentials are
never read by the operator: the Deployment mounts the referenced Secret as files and points the
provider's *_FILE variables at them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from outbound_operator.reconcile.admission import Refusal, resolve_image
from outbound_operator.reconcile.spec import ChannelProviderSpec
from outbound_operator.settings import OperatorSettings

GROUP = "messaging.outbound.dev"
HTTP_PORT = 8080
CREDENTIALS_DIR = "/var/run/secrets/outbound/provider"
CONFIG_HASH_ANNOTATION = f"{GROUP}/config-hash"
MANAGED_BY = "outbound-operator"

DEFAULT_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
# Worker processes per pod: a spec.env entry may set it (the only operator variable it may replace).
PROCESSES_VARIABLE = "OUTBOUND_WORKER_PROCESSES"
TMP_DIR = "/tmp"  # writable under the read-only root: the worker processes' shared metrics files


@dataclass(frozen=True, slots=True)
class Workload:
    """Everything the operator applies for one ChannelProvider."""

    config_map: dict[str, Any]
    deployment: dict[str, Any]
    disruption_budget: dict[str, Any]


def label_value(text: str) -> str:
    """A label value (at most 63 characters): long names keep a prefix and a hash suffix."""
    if len(text) <= 63:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{text[:52].rstrip('-.')}-{digest}"


def names(provider: str) -> tuple[str, str]:
    """(Deployment name, ConfigMap name) of a ChannelProvider."""
    return f"{provider}-sender", f"{provider}-sender-config"


def selector_labels(provider: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "outbound-sender",
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/instance": label_value(provider),
    }


def labels(provider: str, spec: ChannelProviderSpec) -> dict[str, str]:
    return {
        **selector_labels(provider),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        f"{GROUP}/channel": spec.channel,
        f"{GROUP}/provider-kind": spec.provider,
    }


def static_config(provider: str, spec: ChannelProviderSpec, settings: OperatorSettings) -> dict[str, str]:
    """Environment of the worker that only changes with the spec (a change rolls the pods)."""
    data = {
        "OUTBOUND_PROVIDER_NAME": provider,
        "OUTBOUND_PROVIDER_KIND": spec.entry.render.mode,  # real APIs, or the generic sandbox
        "OUTBOUND_WORKER_CHANNELS": spec.channel,
        "OUTBOUND_WORKER_BATCH_SIZE": str(min(spec.scaling.batch_size.initial, 1000)),
        "OUTBOUND_WORKER_SHUTDOWN_GRACE_SECONDS": str(settings.worker_shutdown_grace_seconds),
        "OUTBOUND_PROVIDER_CONNECT_TIMEOUT_SECONDS": str(settings.provider_connect_timeout_seconds),
        "OUTBOUND_PROVIDER_READ_TIMEOUT_SECONDS": str(settings.provider_read_timeout_seconds),
        "OUTBOUND_HTTP_PORT": str(HTTP_PORT),
        "OUTBOUND_LOG_FORMAT": "logfmt",
    }
    render = spec.entry.render
    if render.mode == "live":
        data["OUTBOUND_PROVIDERS_ENABLED"] = spec.provider  # this Deployment sends through its provider only
        if settings.worker_webhook_public_url:  # the providers that take a callback URL per message
            data["OUTBOUND_WEBHOOK_PUBLIC_URL"] = settings.worker_webhook_public_url
    if spec.log_level:
        data["OUTBOUND_LOG_LEVEL"] = spec.log_level
    if spec.endpoint:
        data[render.endpoint_variable] = spec.endpoint
    sender = spec.sender or {}
    for field, variable in render.sender_settings.items():
        if field in sender:
            data[variable] = str(sender[field])
    return data


def config_hash(data: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def config_map(provider: str, spec: ChannelProviderSpec, settings: OperatorSettings) -> dict[str, Any]:
    _, name = names(provider)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels(provider, spec)},
        "data": static_config(provider, spec, settings),
    }


def _secret_env(name: str, variable: str, *, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": name, "key": "url"}
    if optional:
        ref["optional"] = True
    return {"name": variable, "valueFrom": {"secretKeyRef": ref}}


def credential_env(spec: ChannelProviderSpec) -> list[dict[str, Any]]:
    """*_FILE variables pointing at the mounted Secret's files (the file is named by its Secret key)."""
    ref = spec.credentials_secret_ref
    if ref is None:
        return []
    entry = spec.entry
    files = {cred: entry.variable(f"{field}_file") for cred, field in entry.render.credentials.items()}
    return [{"name": var, "value": f"{CREDENTIALS_DIR}/{ref.key(cred)}"} for cred, var in sorted(files.items())]


def processes_env(spec: ChannelProviderSpec) -> list[dict[str, Any]]:
    """One worker process per CPU of the container: its CPU limit, else its request, rounded up by
    Kubernetes (a resourceFieldRef with divisor 1; 1500m -> 2); 1 without either. Nothing when
    spec.env sets OUTBOUND_WORKER_PROCESSES itself."""
    if any(variable.name == PROCESSES_VARIABLE for variable in spec.env):
        return []
    resources = spec.resources or DEFAULT_RESOURCES
    kind = next((k for k in ("limits", "requests") if "cpu" in (resources.get(k) or {})), None)
    if kind is None:
        return [{"name": PROCESSES_VARIABLE, "value": "1"}]
    ref = {"containerName": "worker", "resource": f"{kind}.cpu", "divisor": "1"}
    return [{"name": PROCESSES_VARIABLE, "valueFrom": {"resourceFieldRef": ref}}]


def env(spec: ChannelProviderSpec, settings: OperatorSettings) -> list[dict[str, Any]]:
    variables = [_secret_env(settings.worker_database_secret, "DATABASE_URL")]
    if settings.worker_redis_secret:
        variables.append(_secret_env(settings.worker_redis_secret, "REDIS_URL"))
    variables += processes_env(spec)
    return variables + credential_env(spec) + [variable.manifest() for variable in spec.env]


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def worker_image(spec: ChannelProviderSpec, settings: OperatorSettings) -> str:
    """The image the operator's settings allow for this spec (the reconcile refuses others first)."""
    image = resolve_image(spec.image, settings)
    if isinstance(image, Refusal):
        raise ValueError(image.message)
    return image


def container(provider: str, spec: ChannelProviderSpec, settings: OperatorSettings) -> dict[str, Any]:
    _, config_name = names(provider)
    body: dict[str, Any] = {
        "name": "worker",
        "image": worker_image(spec, settings),
        "args": ["worker"],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": config_name}}],
        "env": env(spec, settings),
        "resources": spec.resources or DEFAULT_RESOURCES,
        "startupProbe": _probe("/healthz", 2, 30),
        "livenessProbe": _probe("/healthz", 10, 3),
        "readinessProbe": _probe("/readyz", 5, 2),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    body["volumeMounts"] = [{"name": "tmp", "mountPath": TMP_DIR}]
    if spec.credentials_secret_ref is not None:
        body["volumeMounts"].insert(0, {"name": "credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True})
    return body


def pod_template(provider: str, spec: ChannelProviderSpec, settings: OperatorSettings) -> dict[str, Any]:
    data = static_config(provider, spec, settings)
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,  # the data plane never talks to the Kubernetes API
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            # The credentials Secret is mounted 0440, owned by root: fsGroup makes it the worker's group.
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container(provider, spec, settings)],
    }
    if settings.worker_service_account:
        pod["serviceAccountName"] = settings.worker_service_account
    pod["volumes"] = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    if spec.credentials_secret_ref is not None:
        secret = {"secretName": spec.credentials_secret_ref.name, "defaultMode": 0o440}
        pod["volumes"].insert(0, {"name": "credentials", "secret": secret})
    pod.update(worker_pod_settings(spec, settings))
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(HTTP_PORT),
        "prometheus.io/path": "/actuator/prometheus",
        CONFIG_HASH_ANNOTATION: config_hash(data),
    }
    return {"metadata": {"labels": labels(provider, spec), "annotations": annotations}, "spec": pod}


def deployment(
    provider: str, spec: ChannelProviderSpec, settings: OperatorSettings, replicas: int | None
) -> dict[str, Any]:
    """The worker Deployment; `replicas` None leaves them to another autoscaler (managedBy External)."""
    name, _ = names(provider)
    body: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(provider)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": pod_template(provider, spec, settings),
    }
    if replicas is not None:
        body = {"replicas": replicas, **body}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels(provider, spec)},
        "spec": body,
    }


# -- Placement, pull secrets and extra environment of the worker pods ---------------------------


def worker_pod_settings(spec: ChannelProviderSpec, settings: OperatorSettings) -> dict[str, Any]:
    """Pod spec fields a cluster needs to run the workers: pull secrets (the operator's first, then the
    ChannelProvider's), node selection, tolerations and affinity. Absent fields stay absent, so a
    ChannelProvider that sets none renders the same Deployment as before they existed."""
    fields: dict[str, Any] = {}
    pull = list(dict.fromkeys([*settings.worker_image_pull_secrets, *(ref.name for ref in spec.image_pull_secrets)]))
    if pull:
        fields["imagePullSecrets"] = [{"name": name} for name in pull]
    if spec.node_selector:
        fields["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        fields["tolerations"] = [dict(toleration) for toleration in spec.tolerations]
    if spec.affinity:
        fields["affinity"] = dict(spec.affinity)
    return fields


def operator_env_names(provider: str, spec: ChannelProviderSpec, settings: OperatorSettings) -> set[str]:
    """Every environment variable the operator itself gives the worker (ConfigMap and env), but
    OUTBOUND_WORKER_PROCESSES, which spec.env may set."""
    own = [item["name"] for item in env(spec.model_copy(update={"env": []}), settings)]
    return {*static_config(provider, spec, settings), *own} - {PROCESSES_VARIABLE}


def env_refusal(provider: str, spec: ChannelProviderSpec, settings: OperatorSettings) -> Refusal | None:
    """spec.env may add variables, never replace one the operator sets (database, credentials, ...)."""
    taken = sorted(operator_env_names(provider, spec, settings) & {variable.name for variable in spec.env})
    if not taken:
        return None
    return Refusal(
        "EnvNotAllowed",
        f"spec.env sets {', '.join(taken)}, which the operator sets itself "
        "(use the ChannelProvider's own fields, e.g. logLevel, endpoint, credentialsSecretRef)",
    )


# -- PodDisruptionBudget of the worker Deployment ----------------------------------------------


def disruption_budget_name(provider: str) -> str:
    return f"{provider}-sender"


def disruption_budget(provider: str, spec: ChannelProviderSpec) -> dict[str, Any]:
    """At most one worker pod of this ChannelProvider evicted at a time (node drains, autoscaler).

    maxUnavailable rather than minAvailable: with one replica a drain may still evict it (the queue
    is in PostgreSQL and a drained worker hands its claims back), but with several the channel
    never loses them all at once. A pod that is not running Ready may always be evicted, so a
    crash-looping worker never blocks a drain.
    """
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": disruption_budget_name(provider), "labels": labels(provider, spec)},
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(provider)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def workload(provider: str, spec: ChannelProviderSpec, settings: OperatorSettings, replicas: int | None) -> Workload:
    return Workload(
        config_map(provider, spec, settings),
        deployment(provider, spec, settings, replicas),
        disruption_budget(provider, spec),
    )
