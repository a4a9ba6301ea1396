"""Credentials from a kubeconfig, chosen the way kubectl chooses them (for `kubectl outbound`).

The operator itself logs in through kopf; the kubectl plugin runs on an engineer's machine and must
honour what kubectl honours: ``--kubeconfig`` or ``$KUBECONFIG`` (several files, the first value of
a name wins) or ``~/.kube/config``, ``--context`` or the current context, the context's namespace,
relative paths (resolved against the file that names them), token files and exec credential
plugins (cloud logins such as EKS, GKE and AKS); inside a pod without a kubeconfig, the pod's
ServiceAccount. The result is a kopf ConnectionInfo, so the same
TLS and header code as the operator's own client applies (kube.py).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

EXEC_TIMEOUT_SECONDS = 60.0
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeconfigError(RuntimeError):
    """The kubeconfig is missing, malformed, or does not name what was asked for."""


class _Entry(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class ExecEnv(_Entry):
    name: str
    value: str


class ExecConfig(_Entry):
    command: str
    args: list[str] = Field(default_factory=list)
    env: list[ExecEnv] | None = None
    api_version: str = Field("client.authentication.k8s.io/v1", alias="apiVersion")


class Cluster(_Entry):
    server: str
    certificate_authority: str | None = Field(None, alias="certificate-authority")
    certificate_authority_data: str | None = Field(None, alias="certificate-authority-data")
    insecure_skip_tls_verify: bool | None = Field(None, alias="insecure-skip-tls-verify")
    proxy_url: str | None = Field(None, alias="proxy-url")


class User(_Entry):
    token: str | None = None
    token_file: str | None = Field(None, alias="tokenFile")
    client_certificate: str | None = Field(None, alias="client-certificate")
    client_certificate_data: str | None = Field(None, alias="client-certificate-data")
    client_key: str | None = Field(None, alias="client-key")
    client_key_data: str | None = Field(None, alias="client-key-data")
    username: str | None = None
    password: str | None = None
    exec: ExecConfig | None = None


class Context(_Entry):
    cluster: str
    user: str = ""
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """Where and as whom to talk, and the namespace a command applies to unless told otherwise."""

    context: str
    connection: kopf.ConnectionInfo
    namespace: str


@dataclass
class _Merged:
    current_context: str | None = None
    contexts: dict[str, tuple[Path, dict[str, Any]]] | None = None
    clusters: dict[str, tuple[Path, dict[str, Any]]] | None = None
    users: dict[str, tuple[Path, dict[str, Any]]] | None = None


def kubeconfig_paths(explicit: str | None) -> list[Path]:
    if explicit:
        return [Path(explicit).expanduser()]
    listed = os.environ.get("KUBECONFIG", "")
    paths = [Path(part).expanduser() for part in listed.split(os.pathsep) if part.strip()]
    if paths:
        return [path for path in paths if path.exists()] or paths[:1]
    return [Path("~/.kube/config").expanduser()]


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise KubeconfigError(f"kubeconfig {path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise KubeconfigError(f"kubeconfig {path} is not a mapping")
    return data


def _merge(paths: list[Path]) -> _Merged:
    merged = _Merged(contexts={}, clusters={}, users={})
    for path in paths:
        data = _read(path)
        merged.current_context = merged.current_context or data.get("current-context") or None
        for key, into in (("contexts", merged.contexts), ("clusters", merged.clusters), ("users", merged.users)):
            assert into is not None
            for item in data.get(key) or []:
                field = key[:-1]
                if isinstance(item, dict) and "name" in item and item["name"] not in into:
                    into[item["name"]] = (path, item.get(field) or {})
    return merged


def _entry(kind: str, name: str, found: dict[str, tuple[Path, dict[str, Any]]] | None) -> tuple[Path, dict[str, Any]]:
    if not found or name not in found:
        raise KubeconfigError(f"{kind} {name!r} is not defined in the kubeconfig")
    return found[name]


def _parse(model: type[_Entry], kind: str, name: str, data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        raise KubeconfigError(f"{kind} {name!r} in the kubeconfig is invalid: {problems}") from error


def _resolve(base: Path, value: str | None) -> str | None:
    """kubectl resolves relative file references against the kubeconfig that holds them."""
    if not value:
        return None
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base.parent / path)


def run_exec_plugin(config: ExecConfig, base: Path) -> dict[str, Any]:
    """Run a client-go credential plugin; returns the ExecCredential's status."""
    command = config.command
    if os.sep in command and not Path(command).is_absolute():
        command = str(base.parent / command)
    env = {**os.environ, **{item.name: item.value for item in config.env or []}}
    info = {"apiVersion": config.api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
    env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
    try:
        result = subprocess.run(
            [command, *config.args], env=env, capture_output=True, text=True, timeout=EXEC_TIMEOUT_SECONDS
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise KubeconfigError(f"credential plugin {config.command!r} could not run: {error}") from error
    if result.returncode != 0:
        raise KubeconfigError(
            f"credential plugin {config.command!r} exited {result.returncode}: {result.stderr.strip()[-500:]}"
        )
    try:
        status = json.loads(result.stdout)["status"]
    except (ValueError, KeyError, TypeError) as error:
        raise KubeconfigError(f"credential plugin {config.command!r} did not print an ExecCredential") from error
    if not isinstance(status, dict):
        raise KubeconfigError(f"credential plugin {config.command!r} printed an ExecCredential without status")
    return status


def _user_credentials(user: User, base: Path) -> dict[str, Any]:
    token = user.token
    if token is None and user.token_file:
        token_path = _resolve(base, user.token_file)
        assert token_path is not None
        try:
            token = Path(token_path).read_text().strip()
        except OSError as error:
            raise KubeconfigError(f"cannot read tokenFile {token_path}: {error.strerror or error}") from error
    found: dict[str, Any] = {
        "token": token,
        "certificate_path": _resolve(base, user.client_certificate),
        "certificate_data": user.client_certificate_data,
        "private_key_path": _resolve(base, user.client_key),
        "private_key_data": user.client_key_data,
        "username": user.username,
        "password": user.password,
    }
    if user.exec is not None:
        status = run_exec_plugin(user.exec, base)
        found["token"] = status.get("token") or found["token"]
        if status.get("clientCertificateData") and status.get("clientKeyData"):
            found.update(
                certificate_path=None,
                private_key_path=None,
                certificate_data=status["clientCertificateData"],
                private_key_data=status["clientKeyData"],
            )
    return found


def in_cluster(account: Path | None = None) -> Target | None:
    """Inside a pod with no kubeconfig, kubectl uses the pod's ServiceAccount; so does the plugin."""
    account = account or SERVICE_ACCOUNT_DIR
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    token_path = account / "token"
    if not host or not token_path.exists():
        return None
    namespace_path = account / "namespace"
    namespace = namespace_path.read_text().strip() if namespace_path.exists() else "default"
    host = f"[{host}]" if ":" in host else host
    connection = kopf.ConnectionInfo(
        server=f"https://{host}:{port}",
        ca_path=str(account / "ca.crt"),
        token=token_path.read_text().strip(),
        default_namespace=namespace,
    )
    return Target(context="in-cluster", connection=connection, namespace=namespace)


def load(kubeconfig: str | None = None, context: str | None = None) -> Target:
    """The connection and default namespace of `context` (or the current context)."""
    paths = kubeconfig_paths(kubeconfig)
    if not kubeconfig and not context and not os.environ.get("KUBECONFIG") and not paths[0].exists():
        found = in_cluster()
        if found is not None:
            return found
    merged = _merge(paths)
    name = context or merged.current_context
    if not name:
        raise KubeconfigError("no context given and the kubeconfig has no current-context (use --context)")
    path, raw_context = _entry("context", name, merged.contexts)
    ctx: Context = _parse(Context, "context", name, raw_context)
    cluster_path, raw_cluster = _entry("cluster", ctx.cluster, merged.clusters)
    cluster: Cluster = _parse(Cluster, "cluster", ctx.cluster, raw_cluster)
    user_path, raw_user = _entry("user", ctx.user, merged.users) if ctx.user else (path, {})
    user: User = _parse(User, "user", ctx.user, raw_user)
    try:
        connection = kopf.ConnectionInfo(
            server=cluster.server.rstrip("/"),
            ca_path=_resolve(cluster_path, cluster.certificate_authority),
            ca_data=None if cluster.certificate_authority else cluster.certificate_authority_data,
            insecure=cluster.insecure_skip_tls_verify,
            proxy_url=cluster.proxy_url,
            default_namespace=ctx.namespace,
            **_user_credentials(user, user_path),
        )
    except ValueError as error:  # both a file and inline data for the same certificate or key
        raise KubeconfigError(f"user {ctx.user!r} in the kubeconfig: {error}") from error
    return Target(context=name, connection=connection, namespace=ctx.namespace or "default")
