"""Fixtures of the Kubernetes test plane; every test below tests/kube/ can use them.

- ``plane`` (session): a running :class:`ControlPlane` (admin kubeconfig in ``plane.kubeconfig``).
- ``crds`` (session): the ChannelProvider and QuotaPolicy CRDs installed and Established.
- ``namespace`` (function): a fresh namespace for one test, deleted afterwards.
- ``node`` (session): a kubelet node with containerd on the plane (tests/kube/node.py), started by
  the first test that asks for it; one per session, whichever folder its tests are in.
- ``images`` (session): the sender and operator images of the current sources (`make images`).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.images.containers import IMAGES_SCRIPT, Images
from tests.images.fixtures import images

from .node import Node, find_node_binaries, image_root
from .plane import ControlPlane, running_plane
from .tools import MissingBinariesError, find_binaries

__all__ = ["crds", "images", "namespace", "node", "plane"]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the node run after every other test of the session. Once the node is up, kube-scheduler
    runs and marks every pod it cannot place (the node's taint) Unschedulable; the node-less tests
    play the kubelet's part on pods that nothing else touches, and would see the scheduler's answer
    instead. The order within each group is kept."""
    items.sort(key=lambda item: "node" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver (+ kube-controller-manager) for the whole session, stopped by PID at the end."""
    try:
        binaries = find_binaries()
    except MissingBinariesError as error:
        pytest.fail(f"Kubernetes test binaries missing: {error}", pytrace=False)
    started = time.monotonic()
    with running_plane(binaries, tmp_path_factory.mktemp("kube-plane")) as running:
        print(f"plane {running.workdir}: ready in {time.monotonic() - started:.1f} s")
        yield running


@pytest.fixture(scope="session")
def crds(plane: ControlPlane) -> list[str]:
    """Names (crd/<name>) of the CRDs from crds/, applied with kubectl and Established."""
    return plane.install_crds()


@pytest.fixture
def namespace(plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of this test's own."""
    name = plane.create_namespace(request.node.name)
    yield name
    plane.delete_namespace(name)


def pause_image(images: Images) -> str:
    result = subprocess.run([str(IMAGES_SCRIPT), "pause"], env=images.env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"hack/images.sh pause failed: {result.stderr[-2000:]}", pytrace=False)
    return result.stdout.strip().rsplit("PAUSE_IMAGE=", 1)[1]


@pytest.fixture(scope="session")
def node(plane: ControlPlane, images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    try:
        binaries = find_node_binaries()
    except MissingBinariesError as error:
        pytest.fail(str(error), pytrace=False)
    running = Node(plane, binaries, tmp_path_factory.mktemp("kube-node"), image_root(), images.env)
    started = time.monotonic()
    running.start(pause_image(images))
    print(f"node {running.workdir}: Ready in {time.monotonic() - started:.1f} s")
    yield running
    running.stop()
    leftovers = running.leftovers()
    assert not any(leftovers.values()), f"the node left {leftovers}"
