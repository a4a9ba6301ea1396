"""Every validation rule of the CRDs, one test each: the real API server rejects with a clear message."""

from __future__ import annotations

from typing import Any

import pytest

from .manifests import QUOTA_SPEC, TWILIO_SPEC, channel_provider, merged, quota_policy
from .plane import ControlPlane

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("crds")]

CHANNELS = ("SMS", "EMAIL", "WHATSAPP")
SANDBOX_SPEC: dict[str, Any] = {"channel": "SMS", "provider": "sandbox"}
SES: dict[str, Any] = {"region": "eu-west-1", "fromEmail": "noreply@example.com"}

# (test id, base spec, merge patch, text the rejection must contain)
CHANNEL_PROVIDER_CASES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    (
        "provider-matches-channel",
        TWILIO_SPEC,
        {"channel": "EMAIL"},
        "provider twilio cannot serve channel EMAIL",
    ),
    (
        "whatsapp-only-on-whatsapp",
        SANDBOX_SPEC,
        {"channel": "WHATSAPP", "provider": "sendgrid", "sendgrid": {"fromEmail": "a@example.com"}},
        "provider sendgrid cannot serve channel WHATSAPP",
    ),
    (
        "secret-required-for-real-provider",
        TWILIO_SPEC,
        {"credentialsSecretRef": None},
        "credentialsSecretRef is required for provider twilio",
    ),
    ("no-inline-credentials", TWILIO_SPEC, {"authToken": "s3cr3t"}, 'unknown field "spec.authToken"'),
    ("channel-enum", SANDBOX_SPEC, {"channel": "FAX"}, 'spec.channel: Unsupported value: "FAX"'),
    ("provider-enum", SANDBOX_SPEC, {"provider": "acme"}, 'spec.provider: Unsupported value: "acme"'),
    ("twilio-settings-required", TWILIO_SPEC, {"twilio": None}, "provider twilio needs spec.twilio"),
    (
        "twilio-one-sender",
        TWILIO_SPEC,
        {"twilio": {"messagingServiceSid": "MG0123456789abcdef0123456789abcdef"}},
        "twilio needs exactly one of messagingServiceSid or from",
    ),
    ("twilio-from-e164", TWILIO_SPEC, {"twilio": {"from": "5550006"}}, "spec.twilio.from: Invalid value"),
    (
        "settings-match-provider",
        TWILIO_SPEC,
        {"sendgrid": {"fromEmail": "a@example.com"}},
        "sender settings must match the provider",
    ),
    (
        "sendgrid-settings-required",
        SANDBOX_SPEC,
        {"channel": "EMAIL", "provider": "sendgrid", "credentialsSecretRef": {"name": "sg"}},
        "provider sendgrid needs spec.sendgrid with fromEmail",
    ),
    (
        "sendgrid-from-email-required",
        SANDBOX_SPEC,
        {"channel": "EMAIL", "provider": "sendgrid", "credentialsSecretRef": {"name": "sg"}, "sendgrid": {}},
        "spec.sendgrid.fromEmail: Required value",
    ),
    (
        "whatsapp-settings-required",
        SANDBOX_SPEC,
        {"channel": "WHATSAPP", "provider": "whatsapp", "credentialsSecretRef": {"name": "wa"}},
        "provider whatsapp needs spec.whatsapp with phoneNumberId",
    ),
    (
        "whatsapp-phone-number-id",
        SANDBOX_SPEC,
        {
            "channel": "WHATSAPP",
            "provider": "whatsapp",
            "credentialsSecretRef": {"name": "wa"},
            "whatsapp": {"phoneNumberId": "+1555"},
        },
        "spec.whatsapp.phoneNumberId: Invalid value",
    ),
    (
        "vonage-only-on-sms",
        SANDBOX_SPEC,
        {"channel": "EMAIL", "provider": "vonage", "credentialsSecretRef": {"name": "v"}, "vonage": {"from": "Acme"}},
        "provider vonage cannot serve channel EMAIL",
    ),
    (
        "vonage-settings-required",
        SANDBOX_SPEC,
        {"provider": "vonage", "credentialsSecretRef": {"name": "v"}},
        "provider vonage needs spec.vonage with from",
    ),
    (
        "vonage-from",
        SANDBOX_SPEC,
        {"provider": "vonage", "credentialsSecretRef": {"name": "v"}, "vonage": {"from": "+15005550006"}},
        "spec.vonage.from: Invalid value",
    ),
    (
        "vonage-signature-method",
        SANDBOX_SPEC,
        {
            "provider": "vonage",
            "credentialsSecretRef": {"name": "v"},
            "vonage": {"from": "Acme", "signatureMethod": "crc32"},
        },
        'spec.vonage.signatureMethod: Unsupported value: "crc32"',
    ),
    (
        "ses-only-on-email",
        SANDBOX_SPEC,
        {"channel": "SMS", "provider": "ses", "credentialsSecretRef": {"name": "s"}, "ses": SES},
        "provider ses cannot serve channel SMS",
    ),
    (
        "ses-settings-required",
        SANDBOX_SPEC,
        {"channel": "EMAIL", "provider": "ses", "credentialsSecretRef": {"name": "s"}},
        "provider ses needs spec.ses with region and fromEmail",
    ),
    (
        "ses-region",
        SANDBOX_SPEC,
        {"channel": "EMAIL", "provider": "ses", "credentialsSecretRef": {"name": "s"}, "ses": SES | {"region": "EU"}},
        "spec.ses.region: Invalid value",
    ),
    (  # the topics are the API's setting (SES_SNS_TOPIC_ARNS): the worker receives no SES events
        "ses-topic-is-not-the-workers",
        SANDBOX_SPEC,
        {
            "channel": "EMAIL",
            "provider": "ses",
            "credentialsSecretRef": {"name": "s"},
            "ses": SES | {"snsTopicArn": "arn:aws:sns:eu-west-1:123456789012:outbound-ses-events"},
        },
        'unknown field "spec.ses.snsTopicArn"',
    ),
    (
        "secret-keys-known",
        TWILIO_SPEC,
        {"credentialsSecretRef": {"keys": {"password": "pw"}}},
        "credentialsSecretRef.keys may only map accountSid, authToken, apiKey, accessToken, appSecret, apiSecret, "
        "signatureSecret, accessKeyId, secretAccessKey or sessionToken",
    ),
    (
        "secret-name-dns",
        TWILIO_SPEC,
        {"credentialsSecretRef": {"name": "Twilio_Credentials"}},
        "spec.credentialsSecretRef.name: Invalid value",
    ),
    (
        "endpoint-http-url",
        SANDBOX_SPEC,
        {"endpoint": "ftp://sandbox.local/"},
        "endpoint must be an absolute http:// or https:// URL",
    ),
    (
        "real-provider-endpoint-https",
        TWILIO_SPEC,
        {"endpoint": "http://api.twilio.test/"},
        "endpoint of provider twilio must be an https:// URL",
    ),
    (
        "secret-in-own-namespace-only",
        TWILIO_SPEC,
        {"credentialsSecretRef": {"namespace": "kube-system"}},
        'unknown field "spec.credentialsSecretRef.namespace"',
    ),
    ("image-reference", SANDBOX_SPEC, {"image": "registry.test/sender:1 ; curl x"}, "image must be an image reference"),
    ("image-reference-case", SANDBOX_SPEC, {"image": "Registry.test/Sender"}, "image must be an image reference"),
    (
        "endpoint-no-credentials",
        SANDBOX_SPEC,
        {"endpoint": "https://user:pass@api.example.com/"},
        "endpoint must not embed credentials",
    ),
    ("priority-range", SANDBOX_SPEC, {"priority": -1}, "spec.priority: Invalid value: -1"),
    (
        "circuit-mode-enum",
        SANDBOX_SPEC,
        {"circuitBreaker": {"mode": "Open"}},
        'spec.circuitBreaker.mode: Unsupported value: "Open"',
    ),
    (
        "circuit-threshold-percent",
        SANDBOX_SPEC,
        {"circuitBreaker": {"failureRateThreshold": 150}},
        "spec.circuitBreaker.failureRateThreshold: Invalid value: 150: "
        "spec.circuitBreaker.failureRateThreshold in body should be less than or equal to 100",
    ),
    (
        "circuit-window-duration",
        SANDBOX_SPEC,
        {"circuitBreaker": {"window": "ten minutes"}},
        "circuitBreaker.window must be a duration between 10s and 24h",
    ),
    (
        "circuit-cooldown-duration",
        SANDBOX_SPEC,
        {"circuitBreaker": {"coolDown": "48h"}},
        "circuitBreaker.coolDown must be a duration between 1s and 24h",
    ),
    (
        "batch-min-le-max",
        SANDBOX_SPEC,
        {"scaling": {"batchSize": {"min": 50, "max": 20, "initial": 30}}},
        "scaling.batchSize.min must be less than or equal to scaling.batchSize.max",
    ),
    (
        "batch-initial-in-range",
        SANDBOX_SPEC,
        {"scaling": {"batchSize": {"min": 5, "max": 20, "initial": 30}}},
        "scaling.batchSize.initial must lie between scaling.batchSize.min and max",
    ),
    (
        "replicas-min-le-max",
        SANDBOX_SPEC,
        {"scaling": {"replicas": {"min": 4, "max": 2}}},
        "scaling.replicas.min must be less than or equal to scaling.replicas.max",
    ),
    (
        "replicas-managed-by-enum",
        SANDBOX_SPEC,
        {"scaling": {"replicas": {"managedBy": "HPA"}}},
        'spec.scaling.replicas.managedBy: Unsupported value: "HPA"',
    ),
]

QUOTA_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("org-required", {"orgId": None}, "spec.orgId: Required value"),
    ("limit-required", {"dailyLimit": None, "tier": None}, "give a tier or a dailyLimit"),
    (
        "daily-limit-within-tier",
        {"dailyLimit": 20000},
        "dailyLimit exceeds the limit of tier Tier10K (Tier250: 250, Tier1K: 1000",
    ),
    ("tier-enum", {"tier": "Tier2K"}, 'spec.tier: Unsupported value: "Tier2K"'),
    ("per-number-rate-max", {"messagesPerSecond": 1001}, "should be less than or equal to 1000"),
    ("pair-rate-non-negative", {"pairRateSeconds": -6}, "should be greater than or equal to 0"),
    ("thresholds-ascending", {"alertThresholds": [85, 70, 95]}, "alertThresholds must be strictly ascending"),
    ("thresholds-distinct", {"alertThresholds": [70, 70, 95]}, "alertThresholds must be strictly ascending"),
    ("threshold-percent", {"alertThresholds": [70, 101]}, "should be less than or equal to 100"),
    ("reset-period-duration", {"resetPeriod": "1 day"}, "resetPeriod must be a duration between 1m and 720h"),
    (
        "defer-after-first-alert",
        {"alertThresholds": [70, 85, 95], "deferNonUrgentAbovePercent": 50},
        "deferNonUrgentAbovePercent must not be below the first alert threshold",
    ),
    ("fallback-enum", {"fallbackChannel": "WHATSAPP"}, 'spec.fallbackChannel: Unsupported value: "WHATSAPP"'),
    ("template-names", {"urgentTemplates": ["Urgent Alert"]}, "spec.urgentTemplates[0]: Invalid value"),
]


def _rejection(plane: ControlPlane, namespace: str, manifest: dict[str, Any]) -> str:
    result = plane.apply(manifest, namespace=namespace, check=False)
    assert result.returncode != 0, f"accepted but should be rejected: {manifest['spec']}\n{result.stdout}"
    return result.stderr


@pytest.mark.parametrize(
    ("base", "patch", "message"),
    [pytest.param(base, patch, message, id=case) for case, base, patch, message in CHANNEL_PROVIDER_CASES],
)
def test_channel_provider_rule(
    plane: ControlPlane, namespace: str, base: dict[str, Any], patch: dict[str, Any], message: str
) -> None:
    manifest = channel_provider("invalid", merged(base, patch))
    assert message in _rejection(plane, namespace, manifest)


@pytest.mark.parametrize(
    ("patch", "message"), [pytest.param(patch, message, id=case) for case, patch, message in QUOTA_CASES]
)
def test_quota_policy_rule(plane: ControlPlane, namespace: str, patch: dict[str, Any], message: str) -> None:
    manifest = quota_policy("invalid", merged(QUOTA_SPEC, patch))
    assert message in _rejection(plane, namespace, manifest)


def test_channel_is_immutable(plane: ControlPlane, namespace: str) -> None:
    plane.apply(channel_provider("sms", SANDBOX_SPEC), namespace=namespace)
    patch = '{"spec":{"channel":"EMAIL"}}'
    result = plane.kubectl("patch", "cp", "sms", "-n", namespace, "--type=merge", "-p", patch, check=False)
    assert result.returncode != 0
    assert "channel is immutable; create a new ChannelProvider instead" in result.stderr


def test_sandbox_needs_no_secret_on_any_channel(plane: ControlPlane, namespace: str) -> None:
    objects = [channel_provider(f"sandbox-{c.lower()}", {"channel": c, "provider": "sandbox"}) for c in CHANNELS]
    plane.apply(objects, namespace=namespace)
    names = plane.kubectl("get", "cp", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(names) == sorted(f"channelprovider.messaging.outbound.dev/{o['metadata']['name']}" for o in objects)


@pytest.mark.parametrize("tier", ["Tier250", "Unlimited"])
def test_a_tier_needs_no_daily_limit(plane: ControlPlane, namespace: str, tier: str) -> None:
    plane.apply(quota_policy("big", {"orgId": "big", "tier": tier}), namespace=namespace)
    spec = plane.kubectl_json("get", "qp", "big", "-n", namespace)["spec"]
    assert "dailyLimit" not in spec
    assert spec["tier"] == tier


def test_image_may_be_a_reference_a_tag_or_a_digest(plane: ControlPlane, namespace: str) -> None:
    digest = "@sha256:" + "0" * 64
    images = ["registry.local:5000/team/sender:1.2.3" + digest, ":1.2.3", digest, "sender"]
    objects = [channel_provider(f"image-{i}", {**SANDBOX_SPEC, "image": image}) for i, image in enumerate(images)]
    plane.apply(objects, namespace=namespace)
    stored = [plane.kubectl_json("get", "cp", o["metadata"]["name"], "-n", namespace)["spec"]["image"] for o in objects]
    assert stored == images


def test_a_vonage_sms_backup_is_accepted_with_its_defaults(plane: ControlPlane, namespace: str) -> None:
    spec = {
        "channel": "SMS",
        "provider": "vonage",
        "priority": 200,
        "credentialsSecretRef": {"name": "vonage", "keys": {"apiKey": "key", "signatureSecret": "sig"}},
        "vonage": {"from": "AcmeInc"},
    }
    plane.apply(channel_provider("vonage", spec), namespace=namespace)
    stored = plane.kubectl_json("get", "cp", "vonage", "-n", namespace)["spec"]
    assert stored["vonage"] == {"from": "AcmeInc", "signatureMethod": "md5hash"}


def test_an_ses_email_backup_is_accepted(plane: ControlPlane, namespace: str) -> None:
    spec = {
        "channel": "EMAIL",
        "provider": "ses",
        "priority": 200,
        "credentialsSecretRef": {"name": "ses", "keys": {"accessKeyId": "id", "secretAccessKey": "key"}},
        "ses": SES | {"fromName": "Example", "configurationSetName": "outbound"},
    }
    plane.apply(channel_provider("ses", spec), namespace=namespace)
    stored = plane.kubectl_json("get", "cp", "ses", "-n", namespace)["spec"]
    assert stored["ses"]["region"] == "eu-west-1"
