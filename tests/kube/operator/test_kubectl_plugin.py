"""`kubectl outbound` run through the real kubectl binary (plugin discovery on PATH) against the test
plane, with the operator running: what `status` shows is what the operator reported, `trip` and
`reset` reach the workers' control row, and failures are clear one-liners with exit code 1 (2 for
bad usage).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from tests.kube.manifests import channel_provider, quota_policy
from tests.kube.plane import ControlPlane
from tests.processes import sandbox_process

from .support import eventually, get
from .workers import FAST_WORKER_ENV, enqueue_many, statuses

pytestmark = [pytest.mark.kube]
BIN = Path(sys.executable).parent  # where `pip install` put the kubectl-outbound console script


def kubectl_outbound(
    plane: ControlPlane, *args: str, kubeconfig: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`kubectl outbound ARGS` (kubectl finds kubectl-outbound on PATH); --kubeconfig unless env has one."""
    scope = [] if env and "KUBECONFIG" in env else ["--kubeconfig", str(kubeconfig or plane.kubeconfig)]
    environment = {**os.environ, **(env or {}), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    argv = [str(plane.binaries.kubectl), "outbound", *args, *scope]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=environment, check=False)


def plugin_list(plane: ControlPlane) -> str:
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    argv = [str(plane.binaries.kubectl), "plugin", "list"]
    result = subprocess.run(argv, capture_output=True, text=True, env=environment, check=False)
    return result.stdout + result.stderr


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def tables(output: str) -> dict[str, list[dict[str, str]]]:
    """The plugin's tables, by their kind column (the first after NAMESPACE), as rows of {column: cell}."""
    found: dict[str, list[dict[str, str]]] = {}
    for block in output.strip().split("\n\n"):
        header, *lines = block.splitlines()
        words = list(re.finditer(r"\S+", header))
        columns, starts = [w.group() for w in words], [w.start() for w in words]
        ends = [*starts[1:], None]
        kind = columns[1] if columns[0] == "NAMESPACE" else columns[0]
        found[kind] = [
            {column: line[start:end].strip() for column, start, end in zip(columns, starts, ends, strict=True)}
            for line in lines
        ]
    return found


def row(output: str, table: str, name: str) -> dict[str, str]:
    rows = [r for r in tables(output)[table] if r[table] == name]
    assert len(rows) == 1, output
    return rows[0]


def sandbox_provider(name: str, url: str = "http://127.0.0.1:9", **more: Any) -> dict[str, Any]:
    spec = {"channel": "SMS", "provider": "sandbox", "priority": 10, "endpoint": url, "env": FAST_WORKER_ENV}
    return channel_provider(name, {**spec, **more})


def _reconciled(plane: ControlPlane, namespace: str, kind: str, name: str, key: str) -> dict[str, Any]:
    obj = get(plane, namespace, kind, name) or {}
    status = obj.get("status") or {}
    assert key in status, status
    assert status.get("observedGeneration") == obj["metadata"]["generation"], status
    return obj


def _status_matches(plane: ControlPlane, namespace: str) -> str:
    output = ok(kubectl_outbound(plane, "status", "-n", namespace))
    cp = get(plane, namespace, "channelprovider", "primary") or {}
    qp = get(plane, namespace, "quotapolicy", "acme") or {}
    status, usage = cp["status"], qp["status"]
    assert row(output, "CHANNELPROVIDER", "primary") == {
        "CHANNELPROVIDER": "primary",
        "CHANNEL": "SMS",
        "PROVIDER": "sandbox",
        "ENABLED": "true",
        "CIRCUIT": status["circuit"]["state"],
        "SUCCESS": "<none>" if status.get("successRatePercent") is None else f"{status['successRatePercent']:g}%",
        "QUEUE": str(status["queueDepth"]),
        "BATCH": str(status["batchSize"]),
        "REPLICAS": str(status["replicas"]),
    }, output
    quota = row(output, "QUOTAPOLICY", "acme")
    assert quota["LIMIT"] == str(usage["effectiveLimit"]), output
    assert (quota["USED"], quota["REMAINING"]) == (str(usage["used"]), str(usage["remaining"])), output
    return output


@pytest.mark.usefixtures("operator")
async def test_status_shows_the_providers_and_quotas_the_operator_reports(plane: ControlPlane, namespace: str) -> None:
    plugins = plugin_list(plane)
    assert str(BIN / "kubectl-outbound") in plugins, plugins
    plane.apply([sandbox_provider("primary"), quota_policy("acme")], namespace=namespace)
    await eventually(lambda: _reconciled(plane, namespace, "channelprovider", "primary", "batchSize"), 60)
    await eventually(lambda: _reconciled(plane, namespace, "quotapolicy", "acme", "used"), 60)

    # The figures move while the operator adapts (batch size, replicas): compare with a read taken
    # right after the plugin's, until both describe the same moment.
    output = await eventually(lambda: _status_matches(plane, namespace), 60)
    print(f"$ kubectl outbound status\n{output}")
    assert output.splitlines()[0].split() == [
        "CHANNELPROVIDER", "CHANNEL", "PROVIDER", "ENABLED", "CIRCUIT", "SUCCESS", "QUEUE", "BATCH", "REPLICAS"
    ]  # fmt: skip
    assert row(output, "CHANNELPROVIDER", "primary")["CIRCUIT"] == "Closed"
    quota = row(output, "QUOTAPOLICY", "acme")
    assert quota["SCOPE"] == "org/acme"
    assert quota["TIER"] == "Tier10K"
    assert quota["LIMIT"] == "10000"
    assert quota["RESET"].startswith("in ")

    wide = ok(kubectl_outbound(plane, "status", "-n", namespace, "-o", "wide"))
    assert row(wide, "CHANNELPROVIDER", "primary")["PRIORITY"] == "10"
    assert row(wide, "QUOTAPOLICY", "acme")["DAILY-LIMIT"] == "10000"
    listed = json.loads(ok(kubectl_outbound(plane, "status", "-n", namespace, "-o", "json")))
    assert [(o["kind"], o["metadata"]["name"]) for o in listed["items"]] == [
        ("ChannelProvider", "primary"),
        ("QuotaPolicy", "acme"),
    ]
    as_yaml = yaml.safe_load(ok(kubectl_outbound(plane, "status", "-n", namespace, "-o", "yaml")))
    assert as_yaml["kind"] == "List"
    assert [o["spec"] for o in as_yaml["items"]] == [o["spec"] for o in listed["items"]]
    everywhere = ok(kubectl_outbound(plane, "status", "--all-namespaces"))
    assert {"NAMESPACE": namespace, "CHANNELPROVIDER": "primary"}.items() <= next(
        r for r in tables(everywhere)["CHANNELPROVIDER"] if r["NAMESPACE"] == namespace
    ).items()


@pytest.fixture
def sandbox() -> Iterator[str]:
    with sandbox_process(latency_ms=20) as url:
        yield url


async def _control(db: asyncpg.Connection, name: str) -> tuple[str, str] | None:
    row = await db.fetchrow("SELECT circuit_mode, circuit_state FROM provider_control WHERE provider = $1", name)
    return None if row is None else (row["circuit_mode"], row["circuit_state"])


async def _control_is(db: asyncpg.Connection, name: str, expected: tuple[str, str]) -> bool:
    return await _control(db, name) == expected


@pytest.mark.usefixtures("operator")
async def test_trip_opens_the_circuit_and_reset_closes_it_through_probes(
    plane: ControlPlane,
    namespace: str,
    db: asyncpg.Connection,
    sandbox: str,
    rendered_workers: Callable[[str], AbstractContextManager[None]],
) -> None:
    breaker = {"halfOpenProbesPerMinute": 60}
    plane.apply(sandbox_provider("primary", sandbox, circuitBreaker=breaker), namespace=namespace)
    await eventually(lambda: _control_is(db, "primary", ("Auto", "CLOSED")), timeout=60)

    tripped = ok(kubectl_outbound(plane, "trip", "primary", "-n", namespace, "--wait"))
    print(f"$ kubectl outbound trip primary --wait\n{tripped}")
    assert tripped.strip() == (
        "channelprovider.messaging.outbound.dev/primary tripped: circuit mode ForceOpen (was Auto); "
        "circuit Open (ForcedOpen)"
    )
    await eventually(lambda: _control_is(db, "primary", ("ForceOpen", "OPEN")), timeout=30)
    again = ok(kubectl_outbound(plane, "trip", "primary", "-n", namespace))
    assert again.strip() == "channelprovider.messaging.outbound.dev/primary unchanged: mode already ForceOpen"
    listed = ok(kubectl_outbound(plane, "status", "-n", namespace))
    assert row(listed, "CHANNELPROVIDER", "primary")["CIRCUIT"] == "Open (ForceOpen)"

    await enqueue_many(db, 20)
    with rendered_workers("primary"):
        reset = ok(kubectl_outbound(plane, "reset", "primary", "-n", namespace, "--wait"))
        print(f"$ kubectl outbound reset primary --wait\n{reset}")
        assert reset.startswith(
            "channelprovider.messaging.outbound.dev/primary reset: circuit mode Auto (was ForceOpen)"
        )
        # Leaving ForceOpen probes first; the worker's successful probes close the circuit.
        await eventually(lambda: _control_is(db, "primary", ("Auto", "CLOSED")), timeout=60)
        await eventually(lambda: _equals(statuses(db), {"SENT": 20}), timeout=60)
    await eventually(
        lambda: (
            row(ok(kubectl_outbound(plane, "status", "-n", namespace)), "CHANNELPROVIDER", "primary")["CIRCUIT"]
            == "Closed"
        ),
        timeout=30,
    )


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


def _kubeconfig(plane: ControlPlane, path: Path, **changes: Any) -> Path:
    """A copy of the admin kubeconfig (JSON) with top-level changes."""
    document = json.loads(plane.kubeconfig.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))
    return path


@pytest.mark.usefixtures("crds")
def test_errors_are_one_clear_line_with_an_exit_code(plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    missing = kubectl_outbound(plane, "trip", "nothing-here", "-n", namespace)
    assert missing.returncode == 1
    assert missing.stderr == f'error: ChannelProvider "nothing-here" not found in namespace "{namespace}"\n'

    for usage in (["status", "-o", "xml"], ["trip"], ["trip", "x", "-A"], ["status", "-A", "-n", namespace]):
        result = kubectl_outbound(plane, *usage)
        assert result.returncode == 2, (usage, result.stderr)
        assert "usage: kubectl outbound" in result.stderr

    document = json.loads(plane.kubeconfig.read_text())
    cluster = document["clusters"][0]
    closed = {"name": "closed", "cluster": {**cluster["cluster"], "server": "https://127.0.0.1:9"}}
    unreachable = _kubeconfig(plane, tmp_path / "closed.json", clusters=[closed], contexts=[
        {"name": "closed", "context": {"cluster": "closed", "user": document["users"][0]["name"]}}
    ], **{"current-context": "closed"})  # fmt: skip
    down = kubectl_outbound(plane, "status", "-n", namespace, kubeconfig=unreachable)
    assert down.returncode == 1
    assert down.stderr.startswith("error: cannot reach the API server at https://127.0.0.1:9")

    no_context = kubectl_outbound(plane, "status", "--context", "nowhere")
    assert (no_context.returncode, no_context.stderr) == (
        1,
        "error: context 'nowhere' is not defined in the kubeconfig\n",
    )


def _plane_context(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    document = json.loads(plane.kubeconfig.read_text())
    context = document["contexts"][0]
    return {"name": "plane", "context": {**context["context"], "namespace": namespace}}


@pytest.mark.usefixtures("crds")
def test_context_kubeconfig_env_and_namespace_follow_kubectl(
    plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """KUBECONFIG with two files, --context picking the one that works, its namespace as default."""
    plane.apply(sandbox_provider("primary"), namespace=namespace)
    document = json.loads(plane.kubeconfig.read_text())
    closed_cluster = {
        "name": "closed",
        "cluster": {**document["clusters"][0]["cluster"], "server": "https://127.0.0.1:9"},
    }
    first = tmp_path / "first.json"  # current context: a closed port
    first.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "closed", "clusters": [closed_cluster],
        "contexts": [{"name": "closed", "context": {"cluster": "closed", "user": document["users"][0]["name"]}}],
    }))  # fmt: skip
    second = _kubeconfig(plane, tmp_path / "second.json", contexts=[_plane_context(plane, namespace)])
    env = {"KUBECONFIG": f"{first}{os.pathsep}{second}"}
    assert kubectl_outbound(plane, "status", env=env).returncode == 1  # the first file's current context
    output = ok(kubectl_outbound(plane, "status", "--context", "plane", env=env))
    assert row(output, "CHANNELPROVIDER", "primary")["CHANNEL"] == "SMS"
    # No operator runs in this test: --wait gives up after --timeout, exit 1, saying what it waited for.
    started = time.monotonic()
    waited = kubectl_outbound(plane, "trip", "primary", "--context", "plane", "--wait", "--timeout", "3s", env=env)
    assert waited.returncode == 1
    assert waited.stderr.startswith("error: the operator did not reconcile generation 2 within 3s"), waited.stderr
    assert 3 <= time.monotonic() - started < 60


@pytest.mark.usefixtures("crds")
def test_relative_paths_and_token_files_resolve_against_the_kubeconfig(
    plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """certificate-authority and tokenFile relative to the kubeconfig's folder, as kubectl reads them.
    The answer names the token's ServiceAccount: TLS was verified with that CA and the token was sent."""
    plane.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}}, namespace=namespace)
    (tmp_path / "token").write_text(plane.kubectl("create", "token", "reader", "-n", namespace).stdout)
    (tmp_path / "ca.crt").write_bytes(plane.pki.ca_cert.read_bytes())
    folder = tmp_path / "kube"
    folder.mkdir()
    cluster = {"server": plane.server, "certificate-authority": "../ca.crt"}
    (folder / "config").write_text(
        yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "reader",
            "clusters": [{"name": "plane", "cluster": cluster}],
            "users": [{"name": "reader", "user": {"tokenFile": "../token"}}],
            "contexts": [{"name": "reader", "context": {"cluster": "plane", "user": "reader", "namespace": namespace}}],
        })
    )  # fmt: skip
    denied = kubectl_outbound(plane, "status", kubeconfig=folder / "config")
    assert denied.returncode == 1
    expected = f'"system:serviceaccount:{namespace}:reader" cannot list resource "channelproviders"'
    assert expected in denied.stderr, denied.stderr
    assert f'in the namespace "{namespace}"' in denied.stderr


@pytest.mark.usefixtures("crds")
def test_no_access_is_reported_with_the_identity_from_an_exec_credential_plugin(
    plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """A ServiceAccount that may read but not patch: status works, trip says who may not patch what.
    Its token comes from an exec credential plugin, as cloud kubeconfigs (EKS, GKE, AKS) do it."""
    plane.apply(sandbox_provider("primary"), namespace=namespace)
    plane.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "viewer"}}, namespace=namespace)
    token = plane.kubectl("create", "token", "viewer", "-n", namespace)
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": token.stdout.strip()},
    }
    script = tmp_path / "credential.py"
    script.write_text(f"import json\nprint(json.dumps({credential!r}))\n")
    document = json.loads(plane.kubeconfig.read_text())
    user = {"name": "exec", "user": {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable, "args": [str(script)]
    }}}  # fmt: skip
    context = {"name": "exec", "context": {"cluster": document["clusters"][0]["name"], "user": "exec"}}
    kubeconfig = _kubeconfig(
        plane, tmp_path / "exec.json", users=[user], contexts=[context], **{"current-context": "exec"}
    )

    denied = kubectl_outbound(plane, "status", "-n", namespace, kubeconfig=kubeconfig)
    assert denied.returncode == 1
    assert denied.stderr.startswith("Error from server (Forbidden): ")
    assert f'"system:serviceaccount:{namespace}:viewer" cannot list resource "channelproviders"' in denied.stderr

    rules = [{"apiGroups": ["messaging.outbound.dev"], "resources": ["channelproviders", "quotapolicies"],
              "verbs": ["get", "list"]}]  # fmt: skip
    plane.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "viewer"},
                "rules": rules,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "viewer"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "viewer"},
                "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": namespace}],
            },
        ],
        namespace=namespace,
    )
    deadline = time.monotonic() + 30  # RBAC reaches the authorizer through an informer
    while kubectl_outbound(plane, "status", "-n", namespace, kubeconfig=kubeconfig).returncode != 0:
        assert time.monotonic() < deadline, "the viewer's RoleBinding did not take effect"
        time.sleep(0.3)
    forbidden = kubectl_outbound(plane, "trip", "primary", "-n", namespace, kubeconfig=kubeconfig)
    assert forbidden.returncode == 1
    assert forbidden.stderr.startswith("Error from server (Forbidden): ")
    assert 'cannot patch resource "channelproviders"' in forbidden.stderr
    mode = (get(plane, namespace, "channelprovider", "primary") or {})["spec"]["circuitBreaker"]["mode"]
    assert mode == "Auto"
