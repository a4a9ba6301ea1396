"""Fixtures of the Kubernetes test plane; every test below tests/kube/ can use them.

- ``plane`` (session): a running :class:`ControlPlane` (admin kubeconfig in ``plane.kubeconfig``).
- ``crds`` (session): the ChannelProvider and QuotaPolicy CRDs installed and Established.
- ``namespace`` (function): a fresh namespace for one test, deleted afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .plane import ControlPlane, running_plane
from .tools import MissingBinariesError, find_binaries


@pytest.fixture(scope="session")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver (+ kube-controller-manager) for the whole session, stopped by PID at the end."""
    try:
        binaries = find_binaries()
    except MissingBinariesError as error:
        pytest.fail(f"Kubernetes test binaries missing: {error}", pytrace=False)
    with running_plane(binaries, tmp_path_factory.mktemp("kube-plane")) as running:
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
