"""Helpers of the chart tests on the test plane: releases, stub monitoring CRDs, identities."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.kube.kubeconfig import write_token_kubeconfig
from tests.kube.plane import ControlPlane
from tests.unit.helm.chart import CHART

# The Prometheus Operator kinds the chart can render, as minimal CRDs (any content accepted): the
# test plane has no Prometheus Operator, and server-side dry-run needs the kinds to exist.
MONITORING_KINDS = {
    "ServiceMonitor": "servicemonitors",
    "PodMonitor": "podmonitors",
    "PrometheusRule": "prometheusrules",
}


def stub_crd(kind: str, plural: str) -> dict[str, Any]:
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}],
        },
    }


def install_monitoring_stubs(plane: ControlPlane) -> None:
    plane.apply([stub_crd(kind, plural) for kind, plural in MONITORING_KINDS.items()])
    names = [f"crd/{plural}.monitoring.coreos.com" for plural in MONITORING_KINDS.values()]
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)


def helm(plane: ControlPlane, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """helm against the plane; fails the test with helm's output when it exits non-zero."""
    result = plane.helm(*args, check=False, timeout=timeout)
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def values_file(tmp: Path, values: Mapping[str, Any]) -> str:
    path = tmp / f"values-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(values))
    return str(path)


def release_args(release: str, namespace: str, tmp: Path, values: Mapping[str, Any]) -> list[str]:
    return [release, str(CHART), "-n", namespace, "-f", values_file(tmp, values)]


def objects_of(plane: ControlPlane, namespace: str, release: str) -> set[tuple[str, str]]:
    """(kind, name) of every object labelled with the release, namespaced ones in `namespace` and
    the cluster-scoped kinds the chart can create."""
    selector = f"app.kubernetes.io/instance={release}"
    kinds = "deployments,services,serviceaccounts,configmaps,secrets,jobs,poddisruptionbudgets,rolebindings,roles"
    kinds += ",channelproviders,quotapolicies"
    found = plane.kubectl_json("get", kinds, "-n", namespace, "-l", selector)["items"]
    found += plane.kubectl_json("get", "clusterroles,clusterrolebindings", "-l", selector)["items"]
    return {(item["kind"], item["metadata"]["name"]) for item in found}


def token_kubeconfig(plane: ControlPlane, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig acting as an existing ServiceAccount (the chart's), without touching the account."""
    token = plane.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    user = f"system:serviceaccount:{namespace}:{account}"
    return write_token_kubeconfig(path, server=plane.server, ca_cert=plane.pki.ca_cert, user_name=user, token=token)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)


def can_i(plane: ControlPlane, kubeconfig: Path, verb: str, resource: str, namespace: str | None) -> bool:
    scope = ["-n", namespace] if namespace else []
    result = plane.kubectl("auth", "can-i", verb, resource, *scope, kubeconfig=kubeconfig, check=False)
    return result.stdout.strip() == "yes"
