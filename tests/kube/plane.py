"""A real Kubernetes control plane for tests: etcd + kube-apiserver (+ kube-controller-manager).

Like controller-runtime's envtest: real processes on free loopback ports, no nodes, so Pods stay
Pending but everything the API server does (validation, CEL, defaulting, pruning, subresources,
RBAC, TokenRequest) is real. Started once per pytest session by ``tests/kube/conftest.py``.

Typical use in a test::

    def test_x(plane: ControlPlane, namespace: str) -> None:
        plane.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}, namespace=namespace)
        assert plane.kubectl_json("get", "configmap", "c", "-n", namespace)["metadata"]["name"] == "c"
"""

from __future__ import annotations

import json
import os
import re
import secrets
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .kubeconfig import write_cert_kubeconfig, write_token_kubeconfig
from .pki import PkiFiles, write_pki
from .processes import Daemon, free_ports, wait_until
from .tools import KubeBinaries

REPO_ROOT = Path(__file__).resolve().parents[2]
CRDS_DIR = REPO_ROOT / "crds"
SERVICE_CIDR = "10.0.0.0/24"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Controllers worth having without nodes: namespace deletion, garbage collection of owned objects,
# default ServiceAccounts, and Deployments -> ReplicaSets -> (Pending) Pods for operator tests.
CONTROLLERS = ",".join(
    f"{name}-controller" for name in ("namespace", "garbage-collector", "serviceaccount", "deployment", "replicaset")
)
START_TIMEOUT = 60.0


class KubectlError(RuntimeError):
    """kubectl exited non-zero; ``result`` holds its output."""

    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        super().__init__(f"kubectl {' '.join(result.args[1:])} exited {result.returncode}:\n{result.stderr}")


class ControlPlane:
    """etcd and kube-apiserver (plus kube-controller-manager when built) under one work folder."""

    def __init__(self, binaries: KubeBinaries, workdir: Path, *, controller_manager: bool = True) -> None:
        self.binaries = binaries
        self.workdir = workdir
        self._want_controller_manager = controller_manager and binaries.kube_controller_manager is not None
        self._daemons: list[Daemon] = []
        self._pki: PkiFiles | None = None
        self.server = ""
        self.kubeconfig = workdir / "admin.kubeconfig"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start every component and wait until the API server is ready; stops what started on failure."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._pki = write_pki(self.workdir / "pki")
        try:
            etcd_url = self._start_etcd()
            self._start_apiserver(etcd_url)
            if self._want_controller_manager:
                self._start_controller_manager()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the components in reverse order, each by its own PID."""
        while self._daemons:
            self._daemons.pop().stop()

    @property
    def pids(self) -> dict[str, int]:
        return {d.name: d.pid for d in self._daemons if d.pid is not None}

    @property
    def pki(self) -> PkiFiles:
        if self._pki is None:
            raise RuntimeError("the control plane has not been started")
        return self._pki

    @property
    def has_controller_manager(self) -> bool:
        return any(d.name == "kube-controller-manager" for d in self._daemons)

    def _launch(self, name: str, argv: Sequence[str]) -> Daemon:
        daemon = Daemon(name, argv, self.workdir)
        daemon.start()
        self._daemons.append(daemon)
        return daemon

    def _start_etcd(self) -> str:
        client, peer = (f"http://127.0.0.1:{port}" for port in free_ports(2))
        argv = [
            str(self.binaries.etcd),
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--unsafe-no-fsync",  # test data: durability is not needed, speed is
            "--log-level=warn",
        ]
        daemon = self._launch("etcd", argv)
        wait_until(lambda: _http_ok(f"{client}/health"), daemon=daemon, what="etcd /health", timeout=START_TIMEOUT)
        return client

    def _apiserver_argv(self, etcd_url: str, port: int) -> list[str]:
        pki = self.pki
        return [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # To a node's kubelet (logs, exec) as the admin: the kubelet checks it against the CA.
            f"--kubelet-client-certificate={pki.admin_cert}",
            f"--kubelet-client-key={pki.admin_key}",
            "--kubelet-preferred-address-types=InternalIP",  # node names are not in DNS
            # The default reconciler refuses a loopback advertise address for the "kubernetes" Service.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]

    def _start_apiserver(self, etcd_url: str) -> None:
        [port] = free_ports(1)
        self.server = f"https://127.0.0.1:{port}"
        daemon = self._launch("kube-apiserver", self._apiserver_argv(etcd_url, port))
        context = self._admin_ssl_context()
        ready = f"{self.server}/readyz"
        wait_until(lambda: _http_ok(ready, context), daemon=daemon, what="/readyz", timeout=START_TIMEOUT)
        pki = self.pki
        write_cert_kubeconfig(
            self.kubeconfig, server=self.server, ca_cert=pki.ca_cert, cert=pki.admin_cert, key=pki.admin_key
        )

    def _start_controller_manager(self) -> None:
        assert self.binaries.kube_controller_manager is not None
        argv = [
            str(self.binaries.kube_controller_manager),
            f"--kubeconfig={self.kubeconfig}",
            "--secure-port=0",  # no health/metrics endpoint needed: nothing to expose, nothing to secure
            "--leader-elect=false",
            f"--controllers={CONTROLLERS}",
            f"--root-ca-file={self.pki.ca_cert}",
            f"--service-account-private-key-file={self.pki.service_account_key}",
        ]
        self._launch("kube-controller-manager", argv)

    def _admin_ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return context

    # -- kubectl ---------------------------------------------------------------------------

    def env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        """This process's environment with KUBECONFIG pointing at the plane (for kopf, helm, ...)."""
        return {**os.environ, "KUBECONFIG": str(kubeconfig or self.kubeconfig)}

    def kubectl(
        self,
        *args: str,
        stdin: str | None = None,
        kubeconfig: Path | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against the plane (admin unless ``kubeconfig`` is given)."""
        argv = [
            str(self.binaries.kubectl),
            f"--kubeconfig={kubeconfig or self.kubeconfig}",
            f"--cache-dir={self.workdir / 'kubectl-cache'}",
            *args,
        ]
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise KubectlError(result)
        return result

    def kubectl_json(self, *args: str, kubeconfig: Path | None = None) -> Any:
        """kubectl ... -o json, parsed."""
        return json.loads(self.kubectl(*args, "-o", "json", kubeconfig=kubeconfig).stdout)

    def apply(
        self,
        manifest: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        namespace: str | None = None,
        kubeconfig: Path | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """kubectl apply of one object or a list of objects given as Python data."""
        document = (
            manifest if isinstance(manifest, Mapping) else {"apiVersion": "v1", "kind": "List", "items": manifest}
        )
        scope = ["-n", namespace] if namespace else []
        return self.kubectl("apply", *scope, "-f", "-", stdin=json.dumps(document), kubeconfig=kubeconfig, check=check)

    def helm(self, *args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run the helm binary from the tools folder against the plane."""
        if self.binaries.helm is None:
            raise RuntimeError("helm is not built: run `make kube-tools`")
        env = {**self.env(), "HELM_CACHE_HOME": str(self.workdir / "helm-cache")}
        argv = [str(self.binaries.helm), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check, env=env)

    # -- namespaces, CRDs and identities --------------------------------------------------

    def create_namespace(self, prefix: str) -> str:
        """A new namespace named after ``prefix`` plus a random suffix; returns its name."""
        name = f"{_dns_label(prefix, 52)}-{secrets.token_hex(4)}"
        self.kubectl("create", "namespace", name)
        return name

    def delete_namespace(self, name: str) -> None:
        """Ask for deletion without waiting (the namespace controller finishes it, when running)."""
        self.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")

    def install_crds(self, directory: Path = CRDS_DIR, timeout: str = "60s") -> list[str]:
        """kubectl apply every CRD file of ``directory`` (not its samples) and wait until Established."""
        files = sorted(directory.glob("*.yaml"))
        for path in files:
            self.kubectl("apply", "-f", str(path))
        names = [f"crd/{path.name.removesuffix('.yaml')}" for path in files]
        self.kubectl("wait", "--for=condition=Established", f"--timeout={timeout}", *names)
        return names

    def service_account_kubeconfig(self, namespace: str, name: str, *, duration: str = "1h") -> Path:
        """Kubeconfig acting as ServiceAccount ``namespace/name`` (created if missing), via TokenRequest."""
        account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
        self.apply(account, namespace=namespace)
        token = self.kubectl("create", "token", name, "-n", namespace, f"--duration={duration}").stdout.strip()
        path = self.workdir / f"sa-{namespace}-{name}.kubeconfig"
        user = f"system:serviceaccount:{namespace}:{name}"
        return write_token_kubeconfig(path, server=self.server, ca_cert=self.pki.ca_cert, user_name=user, token=token)


def _dns_label(text: str, limit: int) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return label[:limit].rstrip("-") or "test"


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return int(response.status) == 200
    except (OSError, urllib.error.URLError):
        return False


@contextmanager
def running_plane(binaries: KubeBinaries, workdir: Path, *, controller_manager: bool = True) -> Iterator[ControlPlane]:
    """Start a plane for the duration of a ``with`` block; always stopped afterwards."""
    plane = ControlPlane(binaries, workdir, controller_manager=controller_manager)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()
