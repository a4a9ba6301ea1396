"""Helpers of the chart tests on the test plane: releases, stub monitoring CRDs, identities."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.kube.kubeconfig import write_token_kubeconfig
from tests.kube.plane import ControlPlane
from tests.unit.helm.chart import CHART

CLEANUP_SCRIPT = CHART / "files" / "cleanup.py"

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
    kinds = "deployments,statefulsets,services,serviceaccounts,configmaps,secrets,jobs,poddisruptionbudgets"
    kinds += ",rolebindings,roles,channelproviders,quotapolicies,kopfpeerings"
    found = plane.kubectl_json("get", kinds, "-n", namespace, "-l", selector)["items"]
    found += plane.kubectl_json("get", "clusterroles,clusterrolebindings,clusterkopfpeerings", "-l", selector)["items"]
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


def exists(plane: ControlPlane, namespace: str, kind: str, name: str) -> bool:
    return plane.kubectl("get", kind, name, "-n", namespace, check=False).returncode == 0


def complete_job(plane: ControlPlane, namespace: str, name: str) -> None:
    """What the Job controller writes once the Job's pod exited 0 (these tests' pods never run).

    When the test node runs in the same session, its controller-manager runs the real Job controller:
    it has then set ``startTime`` (immutable once set) and counts the hook's Pending pod as active, and
    a finished Job may have no active pod, so both are written as a finished Job has them."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    started = (plane.kubectl_json("get", "job", name, "-n", namespace).get("status") or {}).get("startTime", now)
    conditions = [
        {"type": "SuccessCriteriaMet", "status": "True", "lastProbeTime": now, "lastTransitionTime": now},
        {"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now},
    ]
    status = {
        "startTime": started,
        "completionTime": max(now, started),
        "active": 0,
        "ready": 0,
        "succeeded": 1,
        "conditions": conditions,
    }
    patch = json.dumps({"status": status})
    plane.kubectl("patch", "job", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", patch)


def helm_with_hook(
    plane: ControlPlane, namespace: str, job: str, run_pod: Callable[[], None], *args: str
) -> subprocess.CompletedProcess[str]:
    """Run `helm *args` whose hook Job `job` is carried out by `run_pod` here, then marked complete."""
    env = {**plane.env(), "HELM_CACHE_HOME": str(plane.workdir / "helm-cache")}
    argv = [str(plane.binaries.helm), *args]
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            wait_for(lambda: exists(plane, namespace, "job", job), f"the hook Job {job} is created")
            run_pod()
            complete_job(plane, namespace, job)
            out, err = process.communicate(timeout=90)
        finally:
            if process.poll() is None:
                process.kill()
    result = subprocess.CompletedProcess(argv, process.returncode, out, err)
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{out}\n{err}"
    return result


def run_cleanup_hook(plane: ControlPlane, namespace: str, release: str, workdir: Path) -> None:
    """The pre-delete hook's pod: files/cleanup.py with the hook's own ServiceAccount token."""
    account = f"{release}-outbound-messaging-cleanup"
    kubeconfig = workdir / "cleanup.kubeconfig"
    token_kubeconfig(plane, namespace, account, kubeconfig)
    token = json.loads(kubeconfig.read_text())["users"][0]["user"]["token"]
    (workdir / "cleanup.token").write_text(token)
    wait_for(
        lambda: can_i(plane, kubeconfig, "deletecollection", "channelproviders.messaging.outbound.dev", namespace),
        "the hook's RoleBinding is in force",
    )
    env = {
        **os.environ,
        "RELEASE": release,
        "NAMESPACE": namespace,
        "TIMEOUT_SECONDS": "60",
        "KUBERNETES_API": plane.server,
        "TOKEN_FILE": str(workdir / "cleanup.token"),
        "CA_FILE": str(plane.pki.ca_cert),
    }
    result = subprocess.run(
        [sys.executable, str(CLEANUP_SCRIPT)], env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def uninstall(plane: ControlPlane, namespace: str, release: str, workdir: Path) -> None:
    """`helm uninstall --wait` with its pre-delete hook (present when the release has custom resources)."""
    job = f"{release}-outbound-messaging-cleanup"
    helm_with_hook(
        plane,
        namespace,
        job,
        lambda: run_cleanup_hook(plane, namespace, release, workdir),
        "uninstall",
        release,
        "-n",
        namespace,
        "--wait",
        "--timeout",
        "60s",
    )
