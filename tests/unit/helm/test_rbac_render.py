"""The operator's permissions: exactly the rules of the operator's own manifest, bound where it works."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart import CHART, FULLNAME, NAMESPACE, ROOT, of_kind, one, render

OPERATOR = f"{FULLNAME}-operator"
SOURCE = ROOT / "deploy" / "operator-rbac.yaml"
CHART_COPY = CHART / "files" / "operator-rbac.yaml"


def cluster_role_rules(path: Path) -> list[Any]:
    [role] = [doc for doc in yaml.safe_load_all(path.read_text()) if doc and doc["kind"] == "ClusterRole"]
    rules: list[Any] = role["rules"]
    return rules


def test_chart_copy_is_the_operators_rbac_file() -> None:
    if not SOURCE.exists():
        pytest.fail("deploy/operator-rbac.yaml (from the operator) is missing: merge the operator first")
    assert CHART_COPY.read_bytes() == SOURCE.read_bytes(), "run python hack/chart_sync.py"


def test_cluster_role_has_exactly_the_operators_rules() -> None:
    role = one(render(), "ClusterRole", OPERATOR)
    assert role["rules"] == cluster_role_rules(CHART_COPY)


def test_rules_grant_no_secrets_no_delete_and_no_wildcards() -> None:
    for rule in one(render(), "ClusterRole", OPERATOR)["rules"]:
        assert "secrets" not in rule["resources"]
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"])


def subjects(binding: dict[str, Any]) -> list[Any]:
    subjects_: list[Any] = binding["subjects"]
    return subjects_


def test_default_binds_the_role_in_the_release_namespace_only() -> None:
    docs = render()
    [binding] = of_kind(docs, "RoleBinding")
    assert binding["metadata"].get("namespace", NAMESPACE) == NAMESPACE
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": OPERATOR}
    assert subjects(binding) == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]
    assert not of_kind(docs, "ClusterRoleBinding")


def test_watch_namespaces_get_a_binding_and_a_sender_account_each() -> None:
    docs = render({"operator": {"watchNamespaces": ["team-a", "team-b"]}})
    assert {b["metadata"]["namespace"] for b in of_kind(docs, "RoleBinding")} == {"team-a", "team-b"}
    accounts = {
        (a["metadata"].get("namespace", NAMESPACE), a["metadata"]["name"]) for a in of_kind(docs, "ServiceAccount")
    }
    sender = f"{FULLNAME}-sender"
    assert {(NAMESPACE, sender), ("team-a", sender), ("team-b", sender)} <= accounts
    operator = one(docs, "Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in operator["env"]}
    assert env["OUTBOUND_OPERATOR_NAMESPACES"] == "team-a,team-b"


def test_cluster_wide_uses_a_cluster_role_binding_and_no_worker_account() -> None:
    docs = render({"operator": {"clusterWide": True}})
    assert not of_kind(docs, "RoleBinding")
    [binding] = of_kind(docs, "ClusterRoleBinding")
    assert subjects(binding) == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]
    operator = one(docs, "Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in operator["env"]}
    assert env["OUTBOUND_OPERATOR_NAMESPACES"] == ""
    assert "OUTBOUND_OPERATOR_WORKER_SERVICE_ACCOUNT" not in env


def test_operator_disabled_renders_no_rbac() -> None:
    docs = render({"operator": {"enabled": False}})
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "RoleBinding", "ClusterRoleBinding")]
    assert not [d for d in docs if d["metadata"]["name"] == OPERATOR]
