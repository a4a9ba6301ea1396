"""Helpers for operator tests: the operator as a real process under its ServiceAccount, polling."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import yaml

from tests.kube.plane import REPO_ROOT, ControlPlane
from tests.kube.processes import free_ports

RBAC_FILE = REPO_ROOT / "deploy" / "operator-rbac.yaml"
CLUSTER_WIDE_RBAC_FILE = REPO_ROOT / "deploy" / "operator-rbac-cluster-wide.yaml"
ACCOUNT = "outbound-operator"
T = TypeVar("T")


def rbac_documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(RBAC_FILE.read_text()) if doc]


def namespaced_rbac(namespace: str) -> list[dict[str, Any]]:
    """The shipped Role and RoleBinding, moved to `namespace` (the --namespace deployment)."""
    docs = [doc for doc in rbac_documents() if doc["kind"] in ("Role", "RoleBinding")]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", []):
            subject["namespace"] = namespace
    return docs


def cluster_wide_rbac(namespace: str) -> list[dict[str, Any]]:
    """The shipped cluster-wide ClusterRole and its binding, named and bound for `namespace`'s account.

    Cluster-scoped: the caller deletes them (``plane.kubectl("delete", ...)``) when done.
    """
    docs = [doc for doc in yaml.safe_load_all(CLUSTER_WIDE_RBAC_FILE.read_text()) if doc]
    name = f"{ACCOUNT}-cluster-wide-{namespace}"
    for doc in docs:
        doc["metadata"]["name"] = name
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] = name
            for subject in doc["subjects"]:
                subject["namespace"] = namespace
    return docs


def deployment(name: str) -> dict[str, Any]:
    """A minimal Deployment (stored only: no pod needs to run for an RBAC test)."""
    labels = {"app": name}
    container = {"name": "main", "image": "registry.test/idle:1"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


async def eventually(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll `check` until it returns a truthy value (or stops raising AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            failure: BaseException = AssertionError(f"still falsy: {result!r}")
        except AssertionError as error:
            failure = error
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {failure}") from failure
        await asyncio.sleep(interval)


class OperatorProcess:
    """`python -m outbound_operator --namespace NS` with the ServiceAccount's kubeconfig, standalone by
    its environment (`OUTBOUND_OPERATOR_STANDALONE=true`), as a one-replica install would run it.

    The test planes have no KopfPeering object in a test's namespace, and a peered operator waits for
    one before it handles anything: every test with an OperatorProcess fails if that variable is
    ignored."""

    def __init__(self, plane: ControlPlane, namespace: str, dsn: str, kubeconfig: Path, workdir: Path) -> None:
        self.plane, self.namespace, self.dsn = plane, namespace, dsn
        self.kubeconfig, self.log_path = kubeconfig, workdir / "operator.log"
        self.metrics_port, self.health_port = free_ports(2)
        self.settings: dict[str, str] = {}
        self.namespaces: list[str] = [namespace]  # empty: the whole cluster (no --namespace)
        self.peering: list[str] = []  # command-line flags (--standalone, --peering, --priority)
        self._process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "OUTBOUND_OPERATOR_DATABASE_URL": self.dsn,
            "OUTBOUND_OPERATOR_RECONCILE_INTERVAL_SECONDS": "0.5",
            "OUTBOUND_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "OUTBOUND_OPERATOR_HEALTH_PORT": str(self.health_port),
            "OUTBOUND_OPERATOR_LOG_LEVEL": "DEBUG",
            # The tests' sandboxes listen on loopback over http (test_admission turns this off).
            "OUTBOUND_OPERATOR_ALLOW_INSECURE_SANDBOX_ENDPOINT": "true",
            "OUTBOUND_OPERATOR_STANDALONE": "true",
            **self.settings,
        }

    def start(self) -> None:
        scope = [arg for name in self.namespaces for arg in ("--namespace", name)]
        argv = [sys.executable, "-m", "outbound_operator", *self.peering, *scope]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(argv, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise AssertionError(f"operator exited {self._process.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"operator not healthy within {timeout} s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as response:
            return str(response.read().decode())


def get(plane: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    result = plane.kubectl("get", kind, name, "-n", namespace, "-o", "json", "--ignore-not-found")
    if not result.stdout.strip():
        return None
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return dict(item)
    return {}


def events(plane: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    selector = f"involvedObject.name={name}"
    items: list[dict[str, Any]] = plane.kubectl_json("get", "events", "-n", namespace, "--field-selector", selector)[
        "items"
    ]
    return items


def reasons(plane: ControlPlane, namespace: str, name: str) -> list[str]:
    return [str(e["reason"]) for e in events(plane, namespace, name)]


async def controlled(plane: ControlPlane, namespace: str, db: asyncpg.Connection, *names: str) -> None:
    """Control rows written and each worker Deployment applied (the control row comes first)."""
    query = "SELECT count(*) FROM provider_control WHERE provider = ANY($1::text[])"
    await eventually(lambda: equals(db.fetchval(query, list(names)), len(names)))
    deployments = [f"{name}-sender" for name in names]
    await eventually(lambda: all(get(plane, namespace, "deployment", d) for d in deployments), timeout=30)


async def equals(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)


async def at_least(value: Awaitable[Any], expected: int) -> bool:
    return bool(await value >= expected)


def patch_spec(plane: ControlPlane, namespace: str, name: str, body: str) -> None:
    """`kubectl patch channelprovider NAME --type merge -p BODY`, as the runbook does it."""
    plane.kubectl("patch", "channelprovider", name, "-n", namespace, "--type", "merge", "-p", body)
