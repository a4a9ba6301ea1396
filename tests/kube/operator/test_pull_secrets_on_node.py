"""On the test plane's real node: a worker image kept in a private registry (https, a user and a
password) runs only when the ChannelProvider's ``imagePullSecrets`` names a Secret with the right
login, as a user with a private registry meets it.

The sender image is pushed to the registry (tests/kube/registry.py) under a name the node has never
imported, so the kubelet must pull it, with the credentials of the pod's pull secrets. Without a
pull secret, and with one whose password is wrong, the registry refuses the pull, the pod waits in
ErrImagePull/ImagePullBackOff and the ChannelProvider's Ready quotes the kubelet; with the right
one the pod pulls, becomes Ready, and so does the ChannelProvider. If the operator left
``imagePullSecrets`` out of the pod it renders, the last step could not pull.

Run it alone on the node: `flock /tmp/outbound-node.lock .venv/bin/python -m pytest <this file>`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.images.containers import Images
from tests.kube.manifests import channel_provider
from tests.kube.node import TOLERATION, Node
from tests.kube.plane import ControlPlane
from tests.kube.registry import Registry

from .support import OperatorProcess, condition, eventually, get
from .workers import FAST_WORKER_ENV

pytestmark = [pytest.mark.kube, pytest.mark.images, pytest.mark.timeout(900)]
REPOSITORY = "outbound/sender"
PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff")
LOGIN, STALE = "registry-login", "registry-stale"  # the right password; a wrong one


@dataclass(frozen=True)
class PrivateImage:
    registry: Registry
    reference: str  # <registry address>/outbound/sender:<tag>
    node: Node

    @property
    def repository(self) -> str:
        return self.reference.rsplit(":", 1)[0]


@pytest.fixture
def private_image(plane: ControlPlane, node: Node, images: Images, tmp_path: Path) -> Iterator[PrivateImage]:
    """The sender image pushed to a private registry, and not in the node's containerd."""
    started = time.monotonic()
    registry = Registry(tmp_path / "registry", plane.pki).start()
    repository = f"{registry.address}/{REPOSITORY}"
    try:
        up = time.monotonic()
        node.trust_registry(registry.address, plane.pki.ca_cert)
        private = registry.distinct(images.sender, images.env)
        reference = registry.push(private, REPOSITORY, private.rsplit(":", 1)[1], images.env)
        pushed = time.monotonic()
        node.remove_images(repository)
        print(f"registry {registry.address}: started in {up - started:.1f} s, push {pushed - up:.1f} s")
        yield PrivateImage(registry, reference, node)
    finally:
        registry.stop()
        node.remove_images(repository)
    assert not registry.running()
    assert not node.images_of(repository), "the pulled image stays in the node's kept containerd root"


def _pull_secret(plane: ControlPlane, namespace: str, name: str, registry: Registry, password: str) -> None:
    """A kubernetes.io/dockerconfigjson Secret, made the way the Kubernetes documentation tells users."""
    plane.kubectl(
        "create", "secret", "docker-registry", name, "-n", namespace,
        f"--docker-server={registry.address}", f"--docker-username={registry.user}", f"--docker-password={password}",
    )  # fmt: skip


def _pods(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    pods = plane.kubectl_json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=sms")["items"]
    return [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]


def _secrets_of(pod: dict[str, Any]) -> list[str]:
    return [ref["name"] for ref in pod["spec"].get("imagePullSecrets") or ()]


def _waiting(pod: dict[str, Any]) -> dict[str, Any]:
    [container] = pod["status"].get("containerStatuses") or [{}]
    return dict((container.get("state") or {}).get("waiting") or {})


def _ready(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    return condition(get(plane, namespace, "channelprovider", "sms"), "Ready")


def _patch(plane: ControlPlane, namespace: str, spec: dict[str, Any]) -> None:
    plane.kubectl("patch", "cp", "sms", "-n", namespace, "--type", "merge", "-p", json.dumps({"spec": spec}))


async def _refused(plane: ControlPlane, namespace: str, secrets: list[str]) -> dict[str, Any]:
    """Ready once the pod of the current spec (pull secrets ``secrets``) cannot pull its image, and
    Ready quotes the kubelet. The pod of the spec before may still wait beside it: a Deployment
    removes an old pod only once a new one is available."""

    def refused() -> dict[str, Any]:
        current = [pod for pod in _pods(plane, namespace) if _secrets_of(pod) == secrets]
        assert current, [_secrets_of(pod) for pod in _pods(plane, namespace)]
        for pod in current:
            assert _waiting(pod).get("reason") in PULL_FAILURES, pod["status"]
        ready = _ready(plane, namespace)
        assert ready.get("status") == "False", ready
        assert ready.get("reason") in ("ImagePullFailing", "RolloutInProgress"), ready
        assert "0 of 1 worker pods available; image pull failing: " in ready["message"], ready
        assert "401 Unauthorized" in ready["message"], ready
        return ready

    ready: dict[str, Any] = await eventually(refused, timeout=240, interval=0.5)
    return ready


def _spec(pod_sandbox: str, image: str) -> dict[str, Any]:
    """An SMS ChannelProvider of the sandbox whose one worker pod runs ``image`` on the node."""
    return {
        "channel": "SMS",
        "provider": "sandbox",
        "endpoint": pod_sandbox,
        "image": image,
        "tolerations": [TOLERATION],
        "scaling": {"replicas": {"min": 1, "max": 1}},
        "env": FAST_WORKER_ENV,
    }


def _ready_true(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    ready = _ready(plane, namespace)
    assert (ready.get("status"), ready.get("reason")) == ("True", "WorkersAvailable"), ready
    return ready


def _pulled(registry: Registry, since: int) -> bool:
    """containerd fetched the image's manifest with a login the registry accepted, after ``since``."""
    pattern = rf'msg="response completed" .*uri="?/v2/{REPOSITORY}/manifests/.*useragent="containerd.*status=200'
    return re.search(pattern, registry.log()[since:]) is not None


def _logged(registry: Registry, since: int, said: str) -> bool:
    return said in registry.log()[since:]


async def test_a_private_image_is_pulled_only_with_the_channel_providers_pull_secret(
    plane: ControlPlane,
    namespace: str,
    operator_process: OperatorProcess,
    on_node: tuple[str, str],
    private_image: PrivateImage,
) -> None:
    default_image, pod_sandbox = on_node
    registry, image, repository = private_image.registry, private_image.reference, private_image.repository
    # As a user allows a registry of their own: the operator's list of worker image repositories.
    operator_process.settings["OUTBOUND_OPERATOR_WORKER_IMAGE"] = default_image
    operator_process.settings["OUTBOUND_OPERATOR_WORKER_IMAGE_REPOSITORIES"] = repository
    operator_process.start()
    _pull_secret(plane, namespace, LOGIN, registry, registry.password)
    _pull_secret(plane, namespace, STALE, registry, f"not-{registry.password}")
    plane.apply(channel_provider("sms", _spec(pod_sandbox, image)), namespace=namespace)

    # No pull secret: the kubelet has no login to give; the registry refuses the pull.
    ready = await _refused(plane, namespace, [])
    print(f"Ready without imagePullSecrets: {ready['reason']}: {ready['message']}")
    refused_login = f'error authenticating user \\"{registry.user}\\": authentication failure'
    assert _logged(registry, 0, "invalid authorization credential")  # a request without a login
    assert not _logged(registry, 0, refused_login)
    # A pull secret with a wrong password: the registry sees that login, and refuses it.
    seen = len(registry.log())
    _patch(plane, namespace, {"imagePullSecrets": [{"name": STALE}]})
    ready = await _refused(plane, namespace, [STALE])
    print(f"Ready with a wrong password: {ready['reason']}: {ready['message']}")
    assert _logged(registry, seen, refused_login)

    # The right login: the pod pulls the image from the registry and becomes Ready, then the provider.
    seen = len(registry.log())
    _patch(plane, namespace, {"imagePullSecrets": [{"name": LOGIN}]})
    patched = time.monotonic()

    ready = await eventually(lambda: _ready_true(plane, namespace), timeout=300, interval=0.5)
    print(f"pull secret patched to the ChannelProvider Ready: {time.monotonic() - patched:.1f} s")
    assert ready["message"] == "1 of 1 worker pods available"
    [pod] = _pods(plane, namespace)
    assert _secrets_of(pod) == [LOGIN]
    [container] = pod["status"]["containerStatuses"]
    assert container["ready"] is True
    assert container["image"] == image
    assert container["imageID"].startswith(f"{repository}@sha256:"), container
    assert private_image.node.images_of(repository), "the kubelet pulled no image of the registry"
    # The registry answers only a login it knows: its manifest, served to containerd after the patch.
    assert _pulled(registry, seen), registry.log()[-3000:]


async def test_the_operators_pull_secrets_let_every_worker_pod_pull_a_private_image(
    plane: ControlPlane,
    namespace: str,
    operator_process: OperatorProcess,
    on_node: tuple[str, str],
    private_image: PrivateImage,
) -> None:
    """`OUTBOUND_OPERATOR_WORKER_IMAGE_PULL_SECRETS` (the chart's `imagePullSecrets`): a pull secret
    for every worker pod, with no word of it in the ChannelProvider. Ignored, the pod could not pull."""
    default_image, pod_sandbox = on_node
    registry, image, repository = private_image.registry, private_image.reference, private_image.repository
    operator_process.settings["OUTBOUND_OPERATOR_WORKER_IMAGE"] = default_image
    operator_process.settings["OUTBOUND_OPERATOR_WORKER_IMAGE_REPOSITORIES"] = repository
    operator_process.settings["OUTBOUND_OPERATOR_WORKER_IMAGE_PULL_SECRETS"] = LOGIN
    operator_process.start()
    _pull_secret(plane, namespace, LOGIN, registry, registry.password)
    seen = len(registry.log())
    plane.apply(channel_provider("sms", _spec(pod_sandbox, image)), namespace=namespace)

    ready = await eventually(lambda: _ready_true(plane, namespace), timeout=300, interval=0.5)
    assert ready["message"] == "1 of 1 worker pods available"
    [pod] = _pods(plane, namespace)
    assert _secrets_of(pod) == [LOGIN]
    [container] = pod["status"]["containerStatuses"]
    assert container["imageID"].startswith(f"{repository}@sha256:"), container
    assert _pulled(registry, seen), registry.log()[-3000:]
