"""Kubeconfig files for the test plane, written as JSON (a kubeconfig may be JSON or YAML)."""

from __future__ import annotations

import json
from pathlib import Path

CLUSTER = "outbound-test-plane"


def _document(server: str, ca_cert: Path, user_name: str, user: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER, "cluster": {"server": server, "certificate-authority": str(ca_cert)}}],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": user_name, "context": {"cluster": CLUSTER, "user": user_name}}],
        "current-context": user_name,
        "preferences": {},
    }


def _write(path: Path, document: dict[str, object]) -> Path:
    path.write_text(json.dumps(document, indent=2) + "\n")
    path.chmod(0o600)
    return path


def write_cert_kubeconfig(path: Path, *, server: str, ca_cert: Path, cert: Path, key: Path) -> Path:
    """A kubeconfig that authenticates with a client certificate."""
    user = {"client-certificate": str(cert), "client-key": str(key)}
    return _write(path, _document(server, ca_cert, "admin", user))


def write_token_kubeconfig(path: Path, *, server: str, ca_cert: Path, user_name: str, token: str) -> Path:
    """A kubeconfig that authenticates with a bearer token (e.g. a ServiceAccount token)."""
    return _write(path, _document(server, ca_cert, user_name, {"token": token}))
