"""Every field of the ChannelProvider and QuotaPolicy specs names the test that shows its effect.

The inventory walks the CRD schemas (crds/*.yaml): each field with fixed sub-fields is split into
them; a list or a map (tolerations, env, nodeSelector, ...) is one field. Each field names one test
and how far that test follows the field:

- WORKER: a running worker (the `outbound worker` process the operator rendered, or a pod on the
  test node) behaves differently because of the field;
- OPERATOR: the field's effect is the operator's own (status, Events, the Deployment's replicas,
  the quota ledger), seen through the real API server;
- MANIFEST: only the rendered Deployment, ConfigMap or database row, or only the API server's
  validation, is checked. These are the gaps still open; the list of them is spelled out below so
  that it can only shrink on purpose.

A new CRD field fails this test until it names a test, and a field whose test is renamed or removed
fails it too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CRDS = {
    "ChannelProvider": ROOT / "crds" / "channelproviders.messaging.outbound.dev.yaml",
    "QuotaPolicy": ROOT / "crds" / "quotapolicies.messaging.outbound.dev.yaml",
}
WORKER, OPERATOR, MANIFEST = "worker", "operator", "manifest"

RUNTIME = "tests/kube/operator/test_runtime_control.py"
SCALING = "tests/kube/operator/test_scaling_and_quota.py"
LIFECYCLE = "tests/kube/operator/test_lifecycle.py"
PODS = "tests/kube/operator/test_worker_pods.py"
READY = "tests/kube/operator/test_ready.py"
ADMISSION = "tests/kube/operator/test_admission.py"
WORKLOAD = "tests/unit/operator/test_workload.py"

FORCE_OPEN = f"{RUNTIME}::test_force_open_stops_sends_within_the_bound_and_loses_nothing"
DISABLE = f"{RUNTIME}::test_disable_leaves_messages_queued_and_enable_sends_them"
FAILOVER = f"{RUNTIME}::test_failover_to_the_backup_provider_by_priority"
AUTO_CIRCUIT = f"{RUNTIME}::test_auto_circuit_trips_on_failures_and_recovers_through_half_open"
SCALE = f"{SCALING}::test_replicas_and_batch_follow_queue_depth_without_flapping"
EXTERNAL = f"{SCALING}::test_external_replicas_are_left_alone"
QUOTA = f"{SCALING}::test_quota_policy_is_enforced_by_a_running_worker"
CREATE = f"{LIFECYCLE}::test_create_makes_deployment_configmap_and_control_row"
READY_SCALE = f"{READY}::test_ready_follows_available_worker_pods_through_scale_up_and_down"
ON_NODE = (
    "tests/kube/operator/test_ready_on_node.py::test_the_rendered_worker_pod_becomes_available_and_ready_follows_it"
)
FOREIGN_IMAGE = f"{ADMISSION}::test_a_foreign_image_gets_no_deployment"
PULL_SECRETS = (
    "tests/kube/operator/test_pull_secrets_on_node.py::"
    "test_a_private_image_is_pulled_only_with_the_channel_providers_pull_secret"
)
QUOTA_FIELDS = "tests/kube/operator/test_quota_fields.py"
PACED = f"{QUOTA_FIELDS}::test_pair_rate_and_throughput_of_the_policy_pace_the_worker"
DEFERRED = f"{QUOTA_FIELDS}::test_above_the_deferral_threshold_only_urgent_templates_are_sent"
FALLBACK = f"{QUOTA_FIELDS}::test_above_the_deferral_threshold_a_fallback_channel_takes_the_messages"
RESET = f"{QUOTA_FIELDS}::test_the_reset_period_releases_messages_held_at_the_limit"
TIER = f"{QUOTA_FIELDS}::test_the_tier_is_the_limit_the_worker_enforces_unless_a_daily_limit_takes_its_place"
TWILIO_FROM = "tests/kube/operator/test_twilio_sender.py::test_twilio_from_is_the_number_the_rendered_worker_sends_from"
# SendGrid fails over to SES; SES's recorded requests show its sender settings.
BACKUP_EMAIL = (
    "tests/kube/operator/test_backup_email.py::"
    "test_force_open_on_sendgrid_hands_email_to_ses_which_sends_as_its_channel_provider_says"
)
# The user's install on the test node: live worker pods, what each provider received from them.
E2E = (
    "tests/kube/e2e/test_user_flow.py::"
    "test_a_user_installs_sends_fails_over_scales_upgrades_survives_the_leaders_loss_and_uninstalls"
)

INVENTORY: dict[str, dict[str, tuple[str, str]]] = {
    "ChannelProvider": {
        "channel": (WORKER, DISABLE),  # the rendered worker claims the SMS queue
        "provider": (WORKER, DISABLE),  # sandbox: the rendered worker sends through the generic sandbox
        "enabled": (WORKER, DISABLE),
        "priority": (WORKER, FAILOVER),
        "endpoint": (WORKER, DISABLE),  # the rendered worker calls the sandbox at spec.endpoint
        "env": (WORKER, DISABLE),  # its quick polling comes from spec.env
        "circuitBreaker.mode": (WORKER, FORCE_OPEN),
        "circuitBreaker.failureRateThreshold": (WORKER, AUTO_CIRCUIT),
        "circuitBreaker.window": (WORKER, AUTO_CIRCUIT),
        "circuitBreaker.minimumRequests": (WORKER, AUTO_CIRCUIT),
        "circuitBreaker.coolDown": (WORKER, AUTO_CIRCUIT),
        "circuitBreaker.halfOpenProbesPerMinute": (WORKER, AUTO_CIRCUIT),
        "scaling.batchSize.min": (OPERATOR, SCALE),
        "scaling.batchSize.max": (OPERATOR, SCALE),
        "scaling.batchSize.initial": (OPERATOR, SCALE),
        "scaling.replicas.min": (OPERATOR, READY_SCALE),
        "scaling.replicas.max": (OPERATOR, READY_SCALE),
        "scaling.replicas.managedBy": (OPERATOR, EXTERNAL),
        "scaling.targetQueueDepthPerReplica": (OPERATOR, SCALE),
        "image": (OPERATOR, FOREIGN_IMAGE),
        "nodeSelector": (WORKER, ON_NODE),  # the real scheduler cannot place the pod; Ready quotes it
        "tolerations": (WORKER, ON_NODE),  # the worker pod lands on the tainted test node and sends
        "affinity": (WORKER, ON_NODE),  # a required node affinity no node has leaves the pod unplaced
        "logLevel": (WORKER, f"{PODS}::test_log_level_decides_what_the_rendered_worker_logs"),
        "credentialsSecretRef.name": (WORKER, E2E),
        "credentialsSecretRef.keys": (WORKER, E2E),
        "twilio.messagingServiceSid": (WORKER, E2E),
        "twilio.from": (WORKER, TWILIO_FROM),  # the live worker's requests to the Twilio sandbox
        "sendgrid.fromEmail": (WORKER, E2E),
        "sendgrid.fromName": (WORKER, E2E),
        "whatsapp.phoneNumberId": (WORKER, E2E),
        "whatsapp.apiVersion": (WORKER, E2E),
        "vonage.from": (WORKER, E2E),
        "vonage.signatureMethod": (WORKER, E2E),
        "ses.region": (WORKER, BACKUP_EMAIL),  # the SigV4 credential scope of every SendEmail
        "ses.fromEmail": (WORKER, BACKUP_EMAIL),  # FromEmailAddress "fromName <fromEmail>"
        "ses.fromName": (WORKER, BACKUP_EMAIL),
        "ses.configurationSetName": (WORKER, BACKUP_EMAIL),  # ConfigurationSetName of every SendEmail
        "resources.requests": (WORKER, ON_NODE),  # 64 CPUs: the scheduler finds no node with room
        "resources.limits": (WORKER, E2E),
        # The kubelet pulls from a private registry with the named Secret's login, and only with it.
        "imagePullSecrets": (WORKER, PULL_SECRETS),
    },
    "QuotaPolicy": {
        "orgId": (WORKER, QUOTA),
        "dailyLimit": (WORKER, QUOTA),
        "alertThresholds": (OPERATOR, QUOTA),
        "tier": (WORKER, TIER),
        "resetPeriod": (WORKER, RESET),
        "messagesPerSecond": (WORKER, PACED),
        "pairRateSeconds": (WORKER, PACED),
        "urgentTemplates": (WORKER, DEFERRED),
        "deferNonUrgentAbovePercent": (WORKER, DEFERRED),
        "fallbackChannel": (WORKER, FALLBACK),
    },
}

# The fields whose effect on a running worker no test shows yet (see the module docstring). Moving
# one to WORKER or OPERATOR removes it here; adding one here needs a reason in review.
OPEN_GAPS: dict[str, set[str]] = {
    "ChannelProvider": set(),
    "QuotaPolicy": set(),
}


def fields(schema: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of a spec schema: objects with fixed properties are split, anything else is one."""
    for name, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}{name}"
        if sub.get("type") == "object" and sub.get("properties") and not sub.get("additionalProperties"):
            yield from fields(sub, f"{path}.")
        else:
            yield path


def spec_fields(kind: str) -> set[str]:
    crd = yaml.safe_load(CRDS[kind].read_text())
    [version] = crd["spec"]["versions"]
    return set(fields(version["schema"]["openAPIV3Schema"]["properties"]["spec"]))


def functions_in(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
    }


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_spec_field_names_the_test_of_its_effect(kind: str) -> None:
    declared = spec_fields(kind)
    listed = set(INVENTORY[kind])
    assert not declared - listed, f"{kind} fields with no test of their effect: {sorted(declared - listed)}"
    assert not listed - declared, f"{kind} inventory lists fields the CRD does not have: {sorted(listed - declared)}"


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_each_named_test_exists(kind: str) -> None:
    for field, (_, test) in INVENTORY[kind].items():
        path, _, name = test.partition("::")
        assert (ROOT / path).exists(), f"{kind}.{field}: no file {path}"
        assert name in functions_in(path), f"{kind}.{field}: no test {name} in {path}"


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_the_open_gaps_are_exactly_the_fields_only_checked_in_manifests(kind: str) -> None:
    manifest_only = {field for field, (evidence, _) in INVENTORY[kind].items() if evidence == MANIFEST}
    assert manifest_only == OPEN_GAPS[kind]
    assert {evidence for evidence, _ in INVENTORY[kind].values()} <= {WORKER, OPERATOR, MANIFEST}
