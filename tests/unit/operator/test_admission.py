"""What a ChannelProvider may choose: image, endpoint and Secret are bounded by the operator's settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from outbound_operator.reconcile.admission import VERSION_ONLY, Refusal, refusal, resolve_image
from outbound_operator.reconcile.spec import ChannelProviderSpec
from outbound_operator.reconcile.workload import workload
from outbound_operator.settings import IMAGE_REFERENCE, load_settings
from outbound_sender.errors import ConfigError

CRD = Path(__file__).resolve().parents[3] / "crds" / "channelproviders.messaging.outbound.dev.yaml"
IMAGE = "ghcr.io/outbound-messaging/outbound-sender:0.1.0"
DIGEST = "@sha256:" + "a" * 64
SETTINGS = load_settings(database_url="postgresql://x", worker_image=IMAGE)
TWILIO: dict[str, Any] = {
    "channel": "SMS",
    "provider": "twilio",
    "credentialsSecretRef": {"name": "twilio-credentials"},
    "twilio": {"from": "+15005550006"},
}


def spec(**fields: Any) -> ChannelProviderSpec:
    return ChannelProviderSpec.of({**TWILIO, **fields})


def reason(decision: object) -> str | None:
    return decision.reason if isinstance(decision, Refusal) else None


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (None, IMAGE),
        (":0.2.0", "ghcr.io/outbound-messaging/outbound-sender:0.2.0"),
        (DIGEST, "ghcr.io/outbound-messaging/outbound-sender" + DIGEST),
        ("ghcr.io/outbound-messaging/outbound-sender:0.3.0", "ghcr.io/outbound-messaging/outbound-sender:0.3.0"),
    ],
)
def test_the_operators_image_and_its_versions_are_allowed(image: str | None, expected: str) -> None:
    assert resolve_image(image, SETTINGS) == expected
    assert (
        workload("p", spec(image=image), SETTINGS, 1).deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        == expected
    )


@pytest.mark.parametrize(
    ("image", "why"),
    [
        ("attacker.example/exfil", "ImageNotAllowed"),
        ("attacker.example/exfil:latest", "ImageNotAllowed"),
        ("ghcr.io/outbound-messaging/outbound-sender-evil:1", "ImageNotAllowed"),
        ("ghcr.io/outbound-messaging/outbound-sender/sub:1", "ImageNotAllowed"),
        ("outbound-sender:0.1.0", "ImageNotAllowed"),  # no registry filled in: docker.io is not ghcr.io
        ("ghcr.io/outbound-messaging/outbound-sender:1 ; rm", "ImageInvalid"),
        ("GHCR.io/Outbound/Sender", "ImageInvalid"),
    ],
)
def test_other_images_are_refused_and_never_reach_a_deployment(image: str, why: str) -> None:
    hostile = spec(image=image)
    assert reason(refusal(hostile, "ns", SETTINGS)) == why
    with pytest.raises(ValueError, match=r"spec\.image"):
        workload("p", hostile, SETTINGS, 1)


def test_listed_repositories_are_allowed_and_only_those() -> None:
    settings = load_settings(
        database_url="postgresql://x", worker_image=IMAGE, worker_image_repositories="registry.local:5000/sender, b/c"
    )
    assert refusal(spec(image="registry.local:5000/sender:2"), "ns", settings) is None
    assert refusal(spec(image="b/c" + DIGEST), "ns", settings) is None
    assert reason(refusal(spec(image="registry.local:5000/other:2"), "ns", settings)) == "ImageNotAllowed"


def test_repository_settings_must_be_repositories() -> None:
    with pytest.raises(ConfigError, match="OUTBOUND_OPERATOR_WORKER_IMAGE_REPOSITORIES"):
        load_settings(database_url="postgresql://x", worker_image_repositories="registry.local/sender:1")
    with pytest.raises(ConfigError, match="OUTBOUND_OPERATOR_WORKER_IMAGE"):
        load_settings(database_url="postgresql://x", worker_image="not an image")


@pytest.mark.parametrize("endpoint", ["http://api.twilio.test", "HTTP://api.twilio.test", "ftp://x.test"])
def test_real_providers_need_https(endpoint: str) -> None:
    permissive = load_settings(database_url="postgresql://x", allow_insecure_sandbox_endpoint=True)
    assert reason(refusal(spec(endpoint=endpoint), "ns", permissive)) == "EndpointNotAllowed"
    assert refusal(spec(endpoint="https://api.twilio.test"), "ns", SETTINGS) is None


def test_the_sandbox_may_use_http_only_when_the_operator_allows_it() -> None:
    sandbox = ChannelProviderSpec.of({"channel": "SMS", "provider": "sandbox", "endpoint": "http://sandbox:8025"})
    refused = refusal(sandbox, "ns", SETTINGS)
    assert reason(refused) == "EndpointNotAllowed"
    assert "OUTBOUND_OPERATOR_ALLOW_INSECURE_SANDBOX_ENDPOINT" in str(refused)
    permissive = load_settings(database_url="postgresql://x", allow_insecure_sandbox_endpoint="true")
    assert refusal(sandbox, "ns", permissive) is None


def test_a_secret_is_only_taken_from_the_providers_own_namespace() -> None:
    foreign = spec(credentialsSecretRef={"name": "twilio-credentials", "namespace": "kube-system"})
    assert reason(refusal(foreign, "team-a", SETTINGS)) == "SecretNotAllowed"
    own = spec(credentialsSecretRef={"name": "twilio-credentials", "namespace": "team-a"})
    assert refusal(own, "team-a", SETTINGS) is None
    assert refusal(spec(), "team-a", SETTINGS) is None


def test_the_crds_image_rule_accepts_what_the_operator_parses() -> None:
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    [rule] = spec["properties"]["image"]["x-kubernetes-validations"]
    pattern = re.compile(re.fullmatch(r"self\.matches\('(.*)'\)", rule["rule"])[1])  # type: ignore[index]
    samples = [IMAGE, ":1", DIGEST, ":1" + DIGEST, "a/b:c" + DIGEST, "localhost:5000/x", "x", "A/b", "a b", ":", ""]
    for image in samples:
        parsed = bool(IMAGE_REFERENCE.match(image) or VERSION_ONLY.match(image))
        assert bool(pattern.match(image)) == parsed, image
