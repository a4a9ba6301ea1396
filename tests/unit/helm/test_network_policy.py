"""The chart's NetworkPolicies (rendered by the real helm): off by default; when on, only the API and
webhook port is open, and the metrics ports only to the monitoring namespace."""

from __future__ import annotations

from typing import Any

from .chart import FULLNAME, NAMESPACE, of_kind, one, render, render_error

MONITORING = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def ports(rule: dict[str, Any]) -> list[Any]:
    return [(port["port"], port["protocol"]) for port in rule["ports"]]


def ingress(policy: dict[str, Any]) -> list[dict[str, Any]]:
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules: list[dict[str, Any]] = policy["spec"]["ingress"]
    return rules


def test_off_by_default() -> None:
    assert not of_kind(render(), "NetworkPolicy")


def test_api_takes_its_port_from_anyone_and_metrics_only_from_monitoring() -> None:
    docs = render({"networkPolicy": {"enabled": True}})
    api = one(docs, "NetworkPolicy", f"{FULLNAME}-api")
    pods = one(docs, "Deployment", f"{FULLNAME}-api")["spec"]["template"]["metadata"]["labels"]
    assert api["spec"]["podSelector"]["matchLabels"].items() <= pods.items()
    http, metrics = ingress(api)
    assert ports(http) == [("http", "TCP")]
    assert "from" not in http  # the providers' webhooks come from anywhere
    assert ports(metrics) == [("metrics", "TCP")]
    assert metrics["from"] == MONITORING


def test_operator_and_workers_take_only_metrics_from_monitoring() -> None:
    docs = render({"networkPolicy": {"enabled": True, "monitoringNamespace": "prom"}})
    prom = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prom"}}}]
    operator = one(docs, "NetworkPolicy", f"{FULLNAME}-operator")
    pods = one(docs, "StatefulSet", f"{FULLNAME}-operator")["spec"]["template"]["metadata"]["labels"]
    assert operator["spec"]["podSelector"]["matchLabels"].items() <= pods.items()
    [rule] = ingress(operator)
    assert (ports(rule), rule["from"]) == ([("metrics", "TCP")], prom)
    workers = one(docs, "NetworkPolicy", f"{FULLNAME}-workers")
    assert workers["metadata"]["namespace"] == NAMESPACE
    # The operator's worker pods carry these labels (reconcile/workload.py).
    assert workers["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "outbound-sender",
        "app.kubernetes.io/component": "worker",
    }
    [rule] = ingress(workers)
    assert (ports(rule), rule["from"]) == ([("http", "TCP"), ("metrics", "TCP")], prom)


def test_the_callback_dispatcher_takes_only_scrapes_from_monitoring() -> None:
    docs = render({"networkPolicy": {"enabled": True}})
    policy = one(docs, "NetworkPolicy", f"{FULLNAME}-callbacks")
    pods = one(docs, "Deployment", f"{FULLNAME}-callbacks")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pods.items()
    [rule] = ingress(policy)
    assert (ports(rule), rule["from"]) == ([("http", "TCP")], MONITORING)


def test_the_metrics_port_is_the_named_container_port() -> None:
    docs = render({"networkPolicy": {"enabled": True}})
    operator = one(docs, "StatefulSet", f"{FULLNAME}-operator")["spec"]["template"]["spec"]["containers"][0]
    assert "metrics" in {port["name"] for port in operator["ports"]}


def test_api_sources_and_served_namespaces_follow_the_values() -> None:
    ingress_controller = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    values = {
        "networkPolicy": {"enabled": True, "api": {"from": [ingress_controller]}},
        "operator": {"watchNamespaces": ["team-a", "team-b"]},
    }
    docs = render(values)
    http, _ = ingress(one(docs, "NetworkPolicy", f"{FULLNAME}-api"))
    assert http["from"] == [ingress_controller]
    workers = [p for p in of_kind(docs, "NetworkPolicy") if p["metadata"]["name"] == f"{FULLNAME}-workers"]
    assert sorted(p["metadata"]["namespace"] for p in workers) == ["team-a", "team-b"]


def test_disabled_components_get_no_policy_and_bad_values_are_refused() -> None:
    docs = render({"networkPolicy": {"enabled": True}, "operator": {"enabled": False}, "callbacks": {"enabled": False}})
    assert [p["metadata"]["name"] for p in of_kind(docs, "NetworkPolicy")] == [f"{FULLNAME}-api"]
    assert "/networkPolicy/monitoringNamespace" in render_error(
        {"networkPolicy": {"enabled": True, "monitoringNamespace": "Not_A_Namespace"}}
    )
    assert "additional properties 'port' not allowed" in render_error({"networkPolicy": {"port": 1}})
