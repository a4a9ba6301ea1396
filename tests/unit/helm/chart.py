"""Render the outbound-messaging chart with the real helm binary (the test plane's), parsed as YAML.

docs = render({"api": {"replicas": 3}})          # list of manifests (dicts), hooks included
one(docs, "Deployment", "r-outbound-messaging-api")
error = render_error({"api": {"replicas": -1}})   # helm's stderr when the values are refused
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube.tools import MissingBinariesError, find_binaries, read_versions

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "outbound-messaging"
RELEASE = "r"
NAMESPACE = "outbound"
# helm built from source has no default Kubernetes version: render for the test plane's.
KUBE_VERSION = read_versions()["KUBERNETES_VERSION"]
FULLNAME = f"{RELEASE}-outbound-messaging"


def helm_binary() -> Path:
    try:
        helm = find_binaries().helm
    except MissingBinariesError as error:
        pytest.fail(f"helm missing: {error}", pytrace=False)
    if helm is None:
        pytest.fail("helm is not built: run `make kube-tools`", pytrace=False)
    return helm


def run_helm(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """helm with its own empty config, cache and data folders (no repositories, no plugins)."""
    with tempfile.TemporaryDirectory() as home:
        env = {"HELM_CACHE_HOME": home, "HELM_CONFIG_HOME": home, "HELM_DATA_HOME": home, "PATH": "/usr/bin:/bin"}
        argv = [str(helm_binary()), *args]
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, env=env, timeout=60)


def render_text(values: Mapping[str, Any] | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE) -> str:
    """`helm template` of the chart with ``values`` (hooks included), as text."""
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION, "--values", "-"]
    result = run_helm(*args, stdin=json.dumps(values or {}))
    if result.returncode != 0:
        raise RenderError(result.stderr)
    return result.stdout


class RenderError(RuntimeError):
    """helm template refused the values; the message is helm's."""


def render(values: Mapping[str, Any] | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(render_text(values, release=release, namespace=namespace)) if doc]


def render_error(values: Mapping[str, Any]) -> str:
    with pytest.raises(RenderError) as caught:
        render(values)
    return str(caught.value)


def of_kind(docs: list[Any], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[Any], kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, (
        f"{kind}/{name}: {len(found)} rendered; have {[d['metadata']['name'] for d in of_kind(docs, kind)]}"
    )
    return found[0]


def pod_specs(docs: list[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload the chart renders."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def containers(docs: list[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for where, spec in pod_specs(docs):
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            yield f"{where}/{container['name']}", container


def env_of(container: Mapping[str, Any]) -> dict[str, Any]:
    return {item["name"]: item for item in container.get("env", [])}


def is_hook(doc: Mapping[str, Any]) -> bool:
    return "helm.sh/hook" in (doc["metadata"].get("annotations") or {})
