"""The operator's permissions: exactly the rules of the operator's own manifests, bound where it works.

Workloads (Deployments, ConfigMaps) are granted by a Role in each served namespace only; the one
cluster-wide grant, with clusterWide=true, covers the custom resources and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart import CHART, FULLNAME, NAMESPACE, ROOT, of_kind, one, render

OPERATOR = f"{FULLNAME}-operator"
SOURCES = {
    "operator-rbac.yaml": ROOT / "deploy" / "operator-rbac.yaml",
    "operator-rbac-cluster-wide.yaml": ROOT / "deploy" / "operator-rbac-cluster-wide.yaml",
}
WORKLOADS = {
    "deployments",
    "configmaps",
    "poddisruptionbudgets",
    "pods",
    "secrets",
    "replicasets",
    "statefulsets",
    "daemonsets",
    "jobs",
}


def rules_of(path: Path, kind: str) -> list[Any]:
    [role] = [doc for doc in yaml.safe_load_all(path.read_text()) if doc and doc["kind"] == kind]
    rules: list[Any] = role["rules"]
    return rules


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_chart_copies_are_the_operators_rbac_files(name: str) -> None:
    source = SOURCES[name]
    if not source.exists():
        pytest.fail(f"deploy/{name} (from the operator) is missing: merge the operator first")
    assert (CHART / "files" / name).read_bytes() == source.read_bytes(), "run python hack/chart_sync.py"


def test_shipped_manifests_bind_workloads_only_in_a_namespace() -> None:
    namespaced = [d for d in yaml.safe_load_all(SOURCES["operator-rbac.yaml"].read_text()) if d]
    assert {d["kind"] for d in namespaced} == {"ServiceAccount", "Role", "RoleBinding"}
    cluster = rules_of(SOURCES["operator-rbac-cluster-wide.yaml"], "ClusterRole")
    assert not WORKLOADS & {resource for rule in cluster for resource in rule["resources"]}


def test_each_role_has_exactly_the_operators_rules() -> None:
    for role in of_kind(render(), "Role"):
        if role["metadata"]["name"] == OPERATOR:
            assert role["rules"] == rules_of(CHART / "files" / "operator-rbac.yaml", "Role")


def test_rules_grant_no_secrets_no_delete_and_no_wildcards() -> None:
    docs = render({"operator": {"clusterWide": True}})
    roles = [one(docs, "Role", OPERATOR), one(docs, "ClusterRole", OPERATOR)]
    for rule in [rule for role in roles for rule in role["rules"]]:
        assert "secrets" not in rule["resources"]
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"])


def subjects(binding: dict[str, Any]) -> list[Any]:
    subjects_: list[Any] = binding["subjects"]
    return subjects_


def test_default_is_a_role_in_the_release_namespace_and_nothing_cluster_wide() -> None:
    docs = render()
    [role] = [r for r in of_kind(docs, "Role") if r["metadata"]["name"] == OPERATOR]
    assert role["metadata"]["namespace"] == NAMESPACE
    [binding] = [b for b in of_kind(docs, "RoleBinding") if b["metadata"]["name"] == OPERATOR]
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": OPERATOR}
    assert subjects(binding) == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]
    assert not of_kind(docs, "ClusterRoleBinding")
    assert not of_kind(docs, "ClusterRole")


def test_watch_namespaces_get_a_role_a_binding_and_a_sender_account_each() -> None:
    docs = render({"operator": {"watchNamespaces": ["team-a", "team-b"]}})
    ours = [d for d in docs if d["metadata"]["name"] == OPERATOR]
    assert {d["metadata"]["namespace"] for d in ours if d["kind"] == "Role"} == {"team-a", "team-b"}
    assert {d["metadata"]["namespace"] for d in ours if d["kind"] == "RoleBinding"} == {"team-a", "team-b"}
    accounts = {
        (a["metadata"].get("namespace", NAMESPACE), a["metadata"]["name"]) for a in of_kind(docs, "ServiceAccount")
    }
    sender = f"{FULLNAME}-sender"
    assert {(NAMESPACE, sender), ("team-a", sender), ("team-b", sender)} <= accounts
    operator = one(docs, "StatefulSet", OPERATOR)["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in operator["env"]}
    assert env["OUTBOUND_OPERATOR_NAMESPACES"] == "team-a,team-b"


def test_cluster_wide_grants_the_custom_resources_everywhere_and_workloads_only_in_roles() -> None:
    docs = render({"operator": {"clusterWide": True, "watchNamespaces": ["team-a"]}})
    [binding] = of_kind(docs, "ClusterRoleBinding")
    assert subjects(binding) == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]
    cluster_role = one(docs, "ClusterRole", OPERATOR)
    assert cluster_role["rules"] == rules_of(CHART / "files" / "operator-rbac-cluster-wide.yaml", "ClusterRole")
    assert not WORKLOADS & {resource for rule in cluster_role["rules"] for resource in rule["resources"]}
    assert [r["metadata"]["namespace"] for r in of_kind(docs, "Role") if r["metadata"]["name"] == OPERATOR] == [
        "team-a"
    ]
    operator = one(docs, "StatefulSet", OPERATOR)["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in operator["env"]}
    assert env["OUTBOUND_OPERATOR_NAMESPACES"] == ""
    assert "OUTBOUND_OPERATOR_WORKER_SERVICE_ACCOUNT" not in env


def test_operator_disabled_renders_no_rbac() -> None:
    docs = render({"operator": {"enabled": False}})
    assert not [d for d in docs if d["metadata"]["name"] == OPERATOR]
