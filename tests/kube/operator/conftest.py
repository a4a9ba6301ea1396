"""Fixtures of the operator tests: the shipped RBAC bound in the test namespace, the operator running.

- ``operator_kubeconfig``: the ServiceAccount ``outbound-operator`` of the test namespace with the
  Role and RoleBinding of deploy/operator-rbac.yaml in that namespace (nothing else), as a kubeconfig.
- ``rendered_workers``: ``rendered_workers(name)`` runs the worker of ChannelProvider ``name`` as
  the operator rendered it (workers.rendered_worker), its database Secret naming ``db_dsn``.
- ``operator``: the operator as a real process (`python -m outbound_operator --namespace NS`,
  `OUTBOUND_OPERATOR_STANDALONE=true`) acting as that ServiceAccount, writing to this test's
  database (``db_dsn``).
- ``on_node``: (worker image, sandbox URL) for worker pods on the test node.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.images.containers import Images
from tests.kube.node import Node
from tests.kube.plane import ControlPlane
from tests.processes import sandbox_process

from .support import ACCOUNT, OperatorProcess, namespaced_rbac
from .workers import database_secret, rendered_worker


def _wait_allowed(plane: ControlPlane, namespace: str, kubeconfig: Path, timeout: float = 15.0) -> None:
    """RBAC reaches the authorizer through an informer: wait until the binding is in force."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = plane.kubectl(
            "auth", "can-i", "patch", "deployments", "-n", namespace, kubeconfig=kubeconfig, check=False
        )
        if result.stdout.strip() == "yes":
            return
        time.sleep(0.2)
    raise AssertionError("the operator's RoleBinding did not take effect")


@pytest.fixture
def operator_kubeconfig(plane: ControlPlane, namespace: str, crds: list[str]) -> Path:
    kubeconfig = plane.service_account_kubeconfig(namespace, ACCOUNT)
    plane.apply(namespaced_rbac(namespace), namespace=namespace)
    _wait_allowed(plane, namespace, kubeconfig)
    return kubeconfig


@pytest.fixture
def operator_process(
    plane: ControlPlane, namespace: str, db_dsn: str, operator_kubeconfig: Path, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """Not started: a test may change settings first, then call start()."""
    process = OperatorProcess(plane, namespace, db_dsn, operator_kubeconfig, tmp_path)
    yield process
    process.stop()
    print(f"---- operator log ({process.log_path}) ----\n{process.log()[-6000:]}")


@pytest.fixture
def operator(operator_process: OperatorProcess) -> OperatorProcess:
    operator_process.start()
    return operator_process


@pytest.fixture
def rendered_workers(
    plane: ControlPlane, namespace: str, db_dsn: str, tmp_path: Path
) -> Callable[[str], AbstractContextManager[None]]:
    database_secret(plane, namespace, db_dsn)
    return lambda name: rendered_worker(plane, namespace, name, tmp_path)


@pytest.fixture
def on_node(plane: ControlPlane, namespace: str, node: Node, images: Images, db_dsn: str) -> Iterator[tuple[str, str]]:
    """(worker image, sandbox URL) for pods on the node: the sender image imported into the node, the
    database Secret naming this test's database as pods reach it, the generic sandbox on the host."""
    node.import_image(images.sender)
    database_secret(plane, namespace, node.expose_url(db_dsn)[1])
    with sandbox_process(latency_ms=20) as url:
        yield images.sender, node.expose_url(url)[1]
