"""What a ChannelProvider may ask of the operator (pure): which image runs, where credentials go.

A worker pod receives DATABASE_URL and the provider's credentials, so whoever may create a
ChannelProvider must not choose what runs with them or where they are sent:

- image: the operator's own OUTBOUND_OPERATOR_WORKER_IMAGE unless the spec names either only a tag
  or digest of that image (``:1.2.3``, ``@sha256:…``), or a full reference whose repository is
  that image's repository or one listed in OUTBOUND_OPERATOR_WORKER_IMAGE_REPOSITORIES (compared as
  written: no registry or ``library/`` is filled in);
- endpoint: ``https://`` for every real provider; ``http://`` only for the sandbox kind, and only
  when OUTBOUND_OPERATOR_ALLOW_INSECURE_SANDBOX_ENDPOINT is true;
- Secrets: only in the ChannelProvider's own namespace (a pod can mount no other; a namespace in
  the reference that names another one is refused rather than silently ignored).

A refused ChannelProvider gets no ConfigMap, no Deployment and no control row; its status says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from outbound_operator.reconcile.spec import ChannelProviderSpec
from outbound_operator.settings import IMAGE_DIGEST, IMAGE_REFERENCE, IMAGE_TAG, OperatorSettings

VERSION_ONLY = re.compile(rf"^(?::{IMAGE_TAG}(?:@{IMAGE_DIGEST})?|@{IMAGE_DIGEST})$")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the operator will not run a ChannelProvider: a condition reason and a message."""

    reason: str
    message: str


def repository(reference: str) -> str:
    """The repository of an image reference (without tag and digest); ValueError if malformed."""
    match = IMAGE_REFERENCE.match(reference)
    if match is None:
        raise ValueError(f"not an image reference: {reference!r}")
    return match["repository"]


def allowed_repositories(settings: OperatorSettings) -> list[str]:
    return [repository(settings.worker_image), *settings.worker_image_repositories]


def resolve_image(spec_image: str | None, settings: OperatorSettings) -> str | Refusal:
    """The image the worker runs, or why the spec's image is refused."""
    if not spec_image:
        return settings.worker_image
    if VERSION_ONLY.match(spec_image):
        return repository(settings.worker_image) + spec_image
    match = IMAGE_REFERENCE.match(spec_image)
    if match is None:
        return Refusal("ImageInvalid", f"spec.image {spec_image!r} is not an image reference")
    allowed = allowed_repositories(settings)
    if match["repository"] not in allowed:
        return Refusal(
            "ImageNotAllowed",
            f"spec.image {spec_image!r}: repository {match['repository']!r} is not allowed by the operator "
            f"(allowed: {', '.join(allowed)}; or give only a tag or digest of the operator's image)",
        )
    return spec_image


def check_endpoint(spec: ChannelProviderSpec, settings: OperatorSettings) -> Refusal | None:
    if not spec.endpoint:
        return None
    scheme = urlsplit(spec.endpoint).scheme.lower()
    if scheme == "https":
        return None
    if scheme == "http" and spec.entry.render.mode == "generic":
        if settings.allow_insecure_sandbox_endpoint:
            return None
        return Refusal(
            "EndpointNotAllowed",
            f"spec.endpoint {spec.endpoint!r}: http:// for the sandbox needs the operator setting "
            "OUTBOUND_OPERATOR_ALLOW_INSECURE_SANDBOX_ENDPOINT=true",
        )
    return Refusal(
        "EndpointNotAllowed",
        f"spec.endpoint {spec.endpoint!r}: provider {spec.provider} must use https:// (its credentials travel there)",
    )


def check_secret(spec: ChannelProviderSpec, namespace: str) -> Refusal | None:
    ref = spec.credentials_secret_ref
    if ref is None or ref.namespace in (None, namespace):
        return None
    return Refusal(
        "SecretNotAllowed",
        f"spec.credentialsSecretRef names namespace {ref.namespace!r}: only a Secret in the ChannelProvider's "
        f"own namespace ({namespace}) is used",
    )


def refusal(spec: ChannelProviderSpec, namespace: str, settings: OperatorSettings) -> Refusal | None:
    """The first reason to refuse this spec, or None when the operator may run it."""
    image = resolve_image(spec.image, settings)
    if isinstance(image, Refusal):
        return image
    return check_endpoint(spec, settings) or check_secret(spec, namespace)
