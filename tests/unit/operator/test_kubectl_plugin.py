"""`kubectl outbound` without a cluster: kubeconfig resolution, rendering of partial status, flags,
and what --wait reports. The plugin against a real API server: tests/kube/operator/test_kubectl_plugin.py."""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import io
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from outbound_operator import kubeconfig
from outbound_operator import kubectl_plugin as plugin
from outbound_operator.kubeconfig import KubeconfigError, load

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


def config(users: list[dict[str, Any]], current: str = "main", namespace: str | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {"cluster": "c", "user": users[0]["name"]}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": current,
        "clusters": [{"name": "c", "cluster": {"server": "https://api.test:6443/", "certificate-authority": "ca.crt"}}],
        "users": users,
        "contexts": [{"name": "main", "context": context}],
    }


def test_the_context_namespace_and_relative_files_are_read_as_kubectl_reads_them(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("secret-token\n")
    path = write(tmp_path / "config", config([{"name": "u", "user": {"tokenFile": "token"}}], namespace="ops"))
    target = load(str(path))
    assert (target.context, target.namespace) == ("main", "ops")
    assert target.connection.server == "https://api.test:6443"
    assert target.connection.ca_path == str(tmp_path / "ca.crt")
    assert target.connection.token == "secret-token"
    assert load(str(write(tmp_path / "plain", config([{"name": "u", "user": {}}])))).namespace == "default"


def test_kubeconfig_env_merges_files_and_the_first_value_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = write(tmp_path / "a", config([{"name": "u", "user": {"token": "first"}}]))
    second = write(tmp_path / "b", {**config([{"name": "u", "user": {"token": "second"}}]), "current-context": "x"})
    monkeypatch.setenv("KUBECONFIG", f"{first}:{tmp_path / 'missing'}:{second}")
    target = load()
    assert (target.context, target.connection.token) == ("main", "first")


@pytest.mark.parametrize(
    ("document", "context", "message"),
    [
        (config([{"name": "u", "user": {}}]), "other", "context 'other' is not defined in the kubeconfig"),
        ({**config([{"name": "u", "user": {}}]), "current-context": ""}, None, "no current-context (use --context)"),
        ({**config([{"name": "u", "user": {}}]), "clusters": []}, None, "cluster 'c' is not defined"),
        (
            config([{"name": "u", "user": {"client-certificate": "a.crt", "client-certificate-data": "QQ=="}}]),
            None,
            "Both certificate path & data are set",
        ),
        (
            {**config([{"name": "u", "user": {}}]), "clusters": [{"name": "c", "cluster": {}}]},
            None,
            "cluster 'c' in the kubeconfig is invalid: server: Field required",
        ),
    ],
)
def test_kubeconfig_problems_name_what_is_wrong(
    tmp_path: Path, document: dict[str, Any], context: str | None, message: str
) -> None:
    with pytest.raises(KubeconfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(str(write(tmp_path / "config", document)), context)


def test_inside_a_pod_without_a_kubeconfig_the_service_account_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token\n")
    (account / "namespace").write_text("outbound")
    monkeypatch.setattr(kubeconfig, "SERVICE_ACCOUNT_DIR", account)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    target = load()
    assert (target.context, target.namespace) == ("in-cluster", "outbound")
    assert target.connection.server == "https://10.0.0.1:443"
    assert (target.connection.token, target.connection.ca_path) == ("pod-token", str(account / "ca.crt"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(KubeconfigError, match="cannot read kubeconfig"):
        load()


def test_unreadable_kubeconfigs_are_reported(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match="cannot read kubeconfig"):
        load(str(tmp_path / "absent"))
    (tmp_path / "broken").write_text("clusters: [\n")
    with pytest.raises(KubeconfigError, match="is not valid YAML"):
        load(str(tmp_path / "broken"))


def exec_user(tmp_path: Path, script: str) -> dict[str, Any]:
    (tmp_path / "plugin.py").write_text(script)
    command = {"command": sys.executable, "args": [str(tmp_path / "plugin.py")], "env": [{"name": "X", "value": "1"}]}
    return {"name": "u", "user": {"exec": command}}


def test_exec_credential_plugins_give_tokens_and_client_certificates(tmp_path: Path) -> None:
    status = {"token": "from-exec", "clientCertificateData": "CERT", "clientKeyData": "KEY"}
    script = (
        "import json, os\n"
        "assert os.environ['X'] == '1' and json.loads(os.environ['KUBERNETES_EXEC_INFO'])['kind'] == 'ExecCredential'\n"
        f"print(json.dumps({{'kind': 'ExecCredential', 'status': {status!r}}}))\n"
    )
    target = load(str(write(tmp_path / "config", config([exec_user(tmp_path, script)]))))
    info = target.connection
    assert (info.token, info.certificate_data, info.private_key_data) == ("from-exec", "CERT", "KEY")


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("import sys\nsys.stderr.write('login expired')\nsys.exit(3)\n", "exited 3: login expired"),
        ("print('not json')\n", "did not print an ExecCredential"),
    ],
)
def test_a_failing_exec_credential_plugin_is_reported(tmp_path: Path, script: str, message: str) -> None:
    with pytest.raises(KubeconfigError, match=message):
        load(str(write(tmp_path / "config", config([exec_user(tmp_path, script)]))))


def provider(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    body = {"channel": "SMS", "provider": "twilio", **spec}
    return {"metadata": {"name": "twilio", "namespace": "ops"}, "spec": body, "status": status or {}}


def test_a_provider_not_reconciled_yet_shows_none_rather_than_zeros() -> None:
    cells = plugin.provider_row(provider(), NOW, wide=False)
    assert cells == ["twilio", "SMS", "twilio", "true", "<none>", "<none>", "<none>", "<none>", "<none>"]


def test_a_manual_override_shows_beside_the_state() -> None:
    status = {"circuit": {"state": "Open", "reason": "ForcedOpen"}, "successRatePercent": 87.5, "queueDepth": 40}
    cells = plugin.provider_row(provider(status, circuitBreaker={"mode": "ForceOpen"}, enabled=False), NOW, wide=False)
    assert cells[3:7] == ["false", "Open (ForceOpen)", "87.5%", "40"]


def test_quota_limit_is_the_one_in_force() -> None:
    base = {"metadata": {"name": "q"}, "spec": {"orgId": "acme", "tier": "Tier1K", "dailyLimit": 1000}}
    assert plugin.quota_limit(base) == "1000"
    assert plugin.quota_limit({**base, "status": {"effectiveLimit": 500}}) == "500"  # a manual halving
    assert plugin.quota_limit({**base, "spec": {"orgId": "acme", "tier": "Unlimited"}}) == "unlimited"
    assert plugin.quota_limit({**base, "spec": {"orgId": "acme", "tier": "Tier250"}}) == "250"  # the tier's
    assert plugin.quota_limit({**base, "spec": {"orgId": "acme", "tier": "Unlimited", "dailyLimit": 300}}) == "300"
    row = plugin.quota_row({**base, "status": {"resetAt": "2026-11-29T15:00:00Z"}}, NOW, wide=False)
    assert row[1:] == ["org/acme", "Tier1K", "1000", "<none>", "<none>", "in 3h"]


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (119, "119s"), (125, "2m5s"), (600, "10m"), (7200, "120m"), (36000, "10h")]
)
def test_durations_read_like_kubectl_ages(seconds: float, text: str) -> None:
    assert plugin.duration(seconds) == text


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("2m", 120.0), ("1m30s", 90.0), ("45", 45.0)])
def test_timeouts_are_go_durations(text: str, seconds: float) -> None:
    assert plugin.timeout_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "1x", "s"])
def test_bad_timeouts_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        plugin.timeout_seconds(text)


@pytest.mark.parametrize(
    "argv",
    [["-n", "ops", "status"], ["status", "-n", "ops"], ["status", "--namespace=ops"], ["--namespace", "ops", "status"]],
)
def test_kubectl_flags_go_before_or_after_the_command(argv: list[str]) -> None:
    args = plugin.build_parser().parse_args(argv)
    assert (args.command, args.namespace, args.all_namespaces) == ("status", "ops", False)


class FakeApi(plugin.Api):
    """The API as set_mode sees it: a ChannelProvider the operator refuses to run."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.patches: list[Any] = []

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.obj)

    def merge_patch(self, plural: str, namespace: str, name: str, patch: Any) -> dict[str, Any]:
        self.patches.append(patch)
        self.obj["spec"]["circuitBreaker"] = {"mode": patch["spec"]["circuitBreaker"]["mode"]}
        self.obj["metadata"]["generation"] += 1
        return self.get(plural, namespace, name)


def test_wait_reports_a_refused_provider_and_fails() -> None:
    refused = {"type": "Reconciled", "status": "False", "reason": "ImageNotAllowed", "message": "image not allowed"}
    obj = provider({"observedGeneration": 2, "conditions": [refused]})
    obj["metadata"]["generation"] = 1
    api = FakeApi(obj)
    args = plugin.build_parser().parse_args(["trip", "twilio", "-n", "ops", "--wait"])
    out = io.StringIO()
    target: Any = None
    assert plugin.set_mode(api, args, target, out, io.StringIO()) == plugin.EXIT_FAILED
    assert api.patches == [{"spec": {"circuitBreaker": {"mode": "ForceOpen"}}}]
    assert out.getvalue() == (
        "channelprovider.messaging.outbound.dev/twilio tripped: circuit mode ForceOpen (was Auto); "
        "circuit <none> (<none>); Reconciled=False (ImageNotAllowed): image not allowed\n"
    )


def test_wait_succeeds_when_applied_although_worker_pods_are_missing() -> None:
    """trip acts through the control row on the running workers: missing pods (Ready=False) do not fail it."""
    applied = {"type": "Reconciled", "status": "True", "reason": "Applied", "message": "applied"}
    missing = {"type": "Ready", "status": "False", "reason": "WorkersUnavailable", "message": "0 of 1 worker pods"}
    obj = provider({"observedGeneration": 2, "conditions": [applied, missing], "circuit": {"state": "Open"}})
    obj["metadata"]["generation"] = 1
    args = plugin.build_parser().parse_args(["trip", "twilio", "-n", "ops", "--wait"])
    out = io.StringIO()
    target: Any = None
    assert plugin.set_mode(FakeApi(obj), args, target, out, io.StringIO()) == plugin.EXIT_OK
    assert out.getvalue().endswith("tripped: circuit mode ForceOpen (was Auto); circuit Open (<none>)\n")
