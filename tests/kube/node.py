"""A real node for the test plane: containerd + runc, a kubelet, kube-scheduler and the controllers
that nodes need, all under one work folder and stopped by their own PIDs.

How it fits this machine (docs/kubernetes-testing.md, "The node"):

- containerd (Debian's) runs by hand with its own root, state and socket, so it never meets a system
  containerd. ``restrict_oom_score_adj = true``: root here lacks CAP_SYS_RESOURCE, and runc fails
  every sandbox when asked to lower a process's OOM score. Network namespaces live under its state
  folder. The sandbox image is the project's own pause image (hack/pause), imported like every other
  image: ``podman save`` piped into ``ctr -n k8s.io images import``.
- CNI: a bridge with host-local addresses from Debian's plugins (/usr/lib/cni); no masquerading.
- registries: containerd reads a ``hosts.toml`` per registry below ``certs.d`` at each pull;
  ``trust_registry`` writes one (https and the CA to trust) for the private registry of
  tests/kube/registry.py, whose images the kubelet pulls with the pods' ``imagePullSecrets``.
- the bridge is made before the first pod, with its gateway address ``HOST_ADDRESS``: the host
  address pods reach. The API server is published there (a relay to its loopback port, and the
  ``kubernetes`` Service's EndpointSlice naming it), so in-cluster clients work as in a cluster;
  ``expose(port)`` publishes any other loopback service (the test PostgreSQL, Redis) the same way.
- kubelet (built by hack/kube-tools.sh from the same module as kube-apiserver) with the cgroupfs
  driver on the host's cgroup v1 layout, on 127.0.0.1 only, authenticating as the plane's admin.
- a second kube-controller-manager runs the controllers a node needs (node lifecycle, which lifts
  the ``not-ready`` taint; the root CA publisher, for ``kube-root-ca.crt``; ServiceAccount tokens;
  Endpoints and EndpointSlices), kube-scheduler places pods, and kube-proxy (iptables mode) routes
  Service virtual IPs.

Stopping deletes every pod first (the kubelet tears down sandboxes and their networks), then stops
the daemons, kills what is left of containerd's shims (found by our socket in their command line),
removes kube-proxy's iptables rules, unmounts everything under the work folder and removes the
bridge and the kubelet's cgroups.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .plane import ControlPlane
from .processes import Daemon, free_ports, wait_until
from .relay import Relay
from .tools import MissingBinariesError, component_dir

NODE_NAME = "outbound-test-node"
# Only pods that tolerate this taint run on the node: tests that do not ask for it keep the plane
# they were written for (their pods stay Pending instead of failing to pull made-up images).
TAINT = {"key": "outbound.dev/test-node", "value": "true", "effect": "NoSchedule"}
TOLERATION = {"key": TAINT["key"], "operator": "Equal", "value": TAINT["value"], "effect": TAINT["effect"]}
BRIDGE = "outbtest0"
POD_SUBNET = "10.244.7.0/24"
# The bridge's own address (the pods' gateway): host services that pods must reach listen here.
HOST_ADDRESS = "10.244.7.1"
# Pods reach the API server at the "kubernetes" Service (10.0.0.1:443, what every pod's
# KUBERNETES_SERVICE_HOST/PORT say); kube-proxy sends that to this EndpointSlice's address.
API_ENDPOINT_SLICE = "kubernetes"
CNI_PLUGINS = Path("/usr/lib/cni")
NODE_CONTROLLERS = ",".join(
    f"{name}-controller"
    for name in (
        "node-lifecycle",
        "root-ca-certificate-publisher",
        "serviceaccount-token",
        "endpoints",
        "endpointslice",
        # What running workloads need besides Deployments: Jobs (the chart's Helm hooks),
        # StatefulSets (the HA operator), PodDisruptionBudget status (drains), and the garbage
        # collection of finished pods.
        "job",
        "statefulset",
        "disruption",
        "pod-garbage-collector",
    )
)
START_TIMEOUT = 120.0
DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "redis": 6379, "http": 80, "https": 443}


@dataclass(frozen=True)
class NodeBinaries:
    kubelet: Path
    kube_scheduler: Path
    kube_proxy: Path
    containerd: Path
    ctr: Path


def find_node_binaries() -> NodeBinaries:
    folder = component_dir("kubernetes-node", "KUBERNETES_VERSION")
    found = {name: folder / name for name in ("kubelet", "kube-scheduler", "kube-proxy")}
    for name in ("containerd", "ctr"):
        found[name] = Path(shutil.which(name) or f"/usr/bin/{name}")
    missing = [str(path) for path in found.values() if not os.access(path, os.X_OK)]
    if missing:
        raise MissingBinariesError(f"missing {', '.join(missing)}: run `make kube-tools` and `make images-deps`")
    return NodeBinaries(
        found["kubelet"], found["kube-scheduler"], found["kube-proxy"], found["containerd"], found["ctr"]
    )


class Node:
    """One kubelet node on ``plane``; ``start()`` returns once the node is Ready and schedulable."""

    def __init__(
        self, plane: ControlPlane, binaries: NodeBinaries, workdir: Path, image_root: Path, podman_env: dict[str, str]
    ) -> None:
        self.plane, self.binaries, self.workdir = plane, binaries, workdir
        self.podman_env = podman_env
        self.socket = workdir / "containerd" / "containerd.sock"
        # containerd's per-registry settings (hosts.toml in a folder named host:port), read at each pull.
        self.registry_hosts = workdir / "containerd" / "certs.d"
        # containerd's root (content, snapshots, metadata) outlives the session: an image imported once
        # (a 450 MB image takes a minute on a busy machine) is not imported again. State is per session.
        self.image_root = image_root
        self.ip = host_ip()  # a node's IP may not be loopback
        self._daemons: list[Daemon] = []
        self._relays: list[Relay] = []
        self.imported: dict[str, float] = {}  # image -> seconds the import took

    # -- start -----------------------------------------------------------------------------

    def start(self, pause_image: str) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            _make_bridge()
            self._start_containerd(pause_image)
            self.import_image(pause_image)
            self._start_node_controllers()
            kubelet = self._start_kubelet()
            wait_until(self._ready, daemon=kubelet, what=f"node {NODE_NAME} Ready", timeout=START_TIMEOUT)
            self._start_kube_proxy()
            self._publish_api_server()
        except BaseException:
            self.stop()
            raise

    def _launch(self, name: str, argv: list[str]) -> Daemon:
        daemon = Daemon(name, argv, self.workdir)
        daemon.start()
        self._daemons.append(daemon)
        return daemon

    def _start_containerd(self, pause_image: str) -> None:
        folder = self.workdir / "containerd"
        cni_conf = self.workdir / "cni"
        for path in (folder, cni_conf):
            path.mkdir(parents=True, exist_ok=True)
        config = folder / "config.toml"
        config.write_text(
            f"""version = 2
root = "{self.image_root}"
state = "{folder / "state"}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{folder / "ttrpc.sock"}"
[debug]
  level = "info"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_PLUGINS}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{self.registry_hosts}"
"""
        )
        conflist = {
            "cniVersion": "1.0.0",
            "name": "outbound-test",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    # A default route through the bridge: Service virtual IPs (10.0.0.0/24) and the
                    # host's relays are reached through the host.
                    "isDefaultGateway": True,
                    "ipMasq": False,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_SUBNET}]],
                        "dataDir": str(self.workdir / "cni-ipam"),
                    },
                },
                {"type": "loopback"},
            ],
        }
        (cni_conf / "10-outbound-test.conflist").write_text(json.dumps(conflist))
        daemon = self._launch("containerd", [str(self.binaries.containerd), "--config", str(config)])
        wait_until(
            lambda: self._ctr("version", check=False).returncode == 0, daemon=daemon, what="containerd", timeout=60
        )

    def _ctr(self, *args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binaries.ctr), "--address", str(self.socket), "--namespace", "k8s.io", *args]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)

    def import_image(self, image: str) -> None:
        """Copy ``image`` from podman's store into this node's containerd."""
        if image in self.imported:
            return
        started = time.monotonic()
        if image in self._ctr("images", "list", "--quiet").stdout.split():
            self.imported[image] = time.monotonic() - started
            return
        archive = self.workdir / "image.tar"
        subprocess.run(
            ["podman", "save", "--format", "docker-archive", "-o", str(archive), image],
            env=self.podman_env,
            check=True,
            capture_output=True,
            timeout=300,
        )
        try:
            self._ctr("images", "import", str(archive), timeout=300)
        finally:
            archive.unlink(missing_ok=True)
        self.imported[image] = time.monotonic() - started
        self._forget_older(image)

    def trust_registry(self, host: str, ca: Path) -> None:
        """Pulls from the registry at ``host`` (``address:port``) go over https and trust ``ca``, as a
        cluster's nodes are told of a private registry."""
        folder = self.registry_hosts / host
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "hosts.toml").write_text(
            f'server = "https://{host}"\n\n[host."https://{host}"]\n'
            f'  capabilities = ["pull", "resolve"]\n  ca = "{ca}"\n'
        )

    def images_of(self, repository: str) -> list[str]:
        """The names containerd holds for ``repository`` (``registry/path``, no tag)."""
        names = self._ctr("images", "list", "--quiet").stdout.split()
        return [name for name in names if name.rsplit(":", 1)[0] == repository or name.startswith(f"{repository}@")]

    def remove_images(self, repository: str) -> None:
        """Forget every image of ``repository``: the next pod that names one must pull it, and the kept
        root does not keep it (containerd collects content no name refers to)."""
        for name in self.images_of(repository):
            self._ctr("images", "remove", name, check=False)
        self._forget_unnamed_ids()

    def _forget_older(self, image: str) -> None:
        """Older builds of ``image``'s repository would pile up in the kept root: remove their names,
        and the ``sha256:<image ID>`` names that an import adds, so containerd can collect them."""
        repository = image.rsplit(":", 1)[0]
        for known in self._ctr("images", "list", "--quiet").stdout.split():
            if known.rsplit(":", 1)[0] == repository and known != image:
                self._ctr("images", "remove", known, check=False)
        self._forget_unnamed_ids()

    def _forget_unnamed_ids(self) -> None:
        """Remove the ``sha256:<image ID>`` names whose image no other name refers to."""
        listing = [line.split() for line in self._ctr("images", "list").stdout.splitlines()[1:]]
        named = {row[2] for row in listing if not row[0].startswith("sha256:")}  # their manifests
        wanted = {json.loads(self._ctr("content", "get", digest).stdout)["config"]["digest"] for digest in named}
        for row in listing:
            if row[0].startswith("sha256:") and row[0] not in wanted:
                self._ctr("images", "remove", row[0], check=False)

    def _start_node_controllers(self) -> None:
        pki = self.plane.pki
        kcm = self.plane.binaries.kube_controller_manager
        if kcm is None:
            raise MissingBinariesError("kube-controller-manager is needed for a node")
        common = [f"--kubeconfig={self.plane.kubeconfig}", "--secure-port=0", "--leader-elect=false"]
        self._launch(
            "kube-controller-manager-node",
            [
                str(kcm),
                *common,
                f"--controllers={NODE_CONTROLLERS}",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-account-private-key-file={pki.service_account_key}",
                "--node-monitor-grace-period=20s",
            ],
        )
        self._launch("kube-scheduler", [str(self.binaries.kube_scheduler), *common])

    def _start_kubelet(self) -> Daemon:
        port, healthz = free_ports(2)
        root = self.workdir / "kubelet"
        root.mkdir(exist_ok=True)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": self.ip,
            "port": port,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "readOnlyPort": 0,
            "podLogsDir": str(self.workdir / "pod-logs"),
            # Only the API server's client certificate (the plane's CA), each request authorized by it.
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.plane.pki.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            "registerWithTaints": [TAINT],
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "makeIPTablesUtilChains": False,  # nothing of ours needs them; they would outlive the node
        }
        config_path = self.workdir / "kubelet-config.json"
        config_path.write_text(json.dumps(config))
        argv = [
            str(self.binaries.kubelet),
            f"--config={config_path}",
            f"--kubeconfig={self.plane.kubeconfig}",
            f"--root-dir={root}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={self.ip}",
        ]
        return self._launch("kubelet", argv)

    def _start_kube_proxy(self) -> None:
        """Service virtual IPs through the host's iptables (removed again by ``kube-proxy --cleanup``)."""
        healthz, metrics = free_ports(2)
        argv = [
            str(self.binaries.kube_proxy),
            f"--kubeconfig={self.plane.kubeconfig}",
            "--proxy-mode=iptables",
            f"--cluster-cidr={POD_SUBNET}",
            f"--hostname-override={NODE_NAME}",
            f"--healthz-bind-address=127.0.0.1:{healthz}",
            f"--metrics-bind-address=127.0.0.1:{metrics}",
            # Leave the host's conntrack limits and timeouts, and its loopback, as they are.
            "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0",
            "--iptables-localhost-nodeports=false",
            "--nodeport-addresses=primary",
        ]
        daemon = self._launch("kube-proxy", argv)
        wait_until(
            lambda: _http_ok(f"http://127.0.0.1:{healthz}/healthz"), daemon=daemon, what="kube-proxy", timeout=60
        )

    def expose(self, port: int, *, host: str = "127.0.0.1") -> Relay:
        """Make the loopback service on ``port`` reachable from pods at ``HOST_ADDRESS:<relay.port>``."""
        relay = Relay(HOST_ADDRESS, port, target_host=host).start()
        self._relays.append(relay)
        return relay

    def expose_url(self, url: str) -> tuple[Relay, str]:
        """A relay to the loopback service of ``url`` (postgresql://, redis://...), and ``url`` as
        pods write it: host and port replaced by the relay's, user, password, path and query kept."""
        parts = urlsplit(url)
        relay = self.expose(parts.port or DEFAULT_PORTS[parts.scheme], host=parts.hostname or "127.0.0.1")
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@{relay.address}" if credentials else relay.address
        return relay, urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def _publish_api_server(self) -> None:
        """What the API server's endpoint reconciler does in a cluster (the plane runs it with
        ``--endpoint-reconciler-type=none``, as its loopback address is not one pods can use): the
        ``kubernetes`` Service's endpoints name an address pods reach, here a relay to the API server."""
        port = int(self.plane.server.rsplit(":", 1)[1])
        relay = self.expose(port)
        endpoint_slice = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": API_ENDPOINT_SLICE,
                "namespace": "default",
                "labels": {
                    "kubernetes.io/service-name": "kubernetes",
                    "endpointslice.kubernetes.io/managed-by": "outbound-test-node",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [HOST_ADDRESS], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": relay.port, "protocol": "TCP"}],
        }
        self.plane.apply(endpoint_slice)

    def _ready(self) -> bool:
        result = self.plane.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        node: dict[str, Any] = json.loads(result.stdout)
        conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
        # The node lifecycle controller lifts node.kubernetes.io/not-ready once the kubelet reports Ready.
        taints = [t["key"] for t in node.get("spec", {}).get("taints") or [] if t["key"] != TAINT["key"]]
        return conditions.get("Ready") == "True" and not taints

    # -- stop ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Every step runs even when an earlier one fails (a lost API server, a vanished folder): a
        step skipped would leave daemons, shims, mounts or iptables rules on the host. The first
        failure is raised at the end."""
        failures: list[Exception] = []

        def attempt(step: Any, *args: Any) -> None:
            try:
                step(*args)
            except Exception as error:  # collected: the first one is raised below
                failures.append(error)

        kubelet = next((d for d in self._daemons if d.name == "kubelet"), None)
        if kubelet is not None and kubelet.running():
            attempt(self._delete_all_pods)
        for relay in self._relays:
            attempt(relay.stop)
        attempt(
            self.plane.kubectl,
            "delete", "endpointslice", API_ENDPOINT_SLICE, "-n", "default", "--ignore-not-found",
        )  # fmt: skip
        while self._daemons:
            daemon = self._daemons.pop()
            if daemon.name == "containerd":
                attempt(self._remove_containers)
            attempt(daemon.stop)
        for step in (self._kill_shims, self._remove_proxy_rules, self._unmount_all, _remove_bridge):
            attempt(step)
        attempt(_remove_kubelet_cgroups)
        if failures:
            raise failures[0]

    def _delete_all_pods(self, timeout: float = 60.0) -> None:
        self.plane.kubectl("delete", "pods", "--all", "--all-namespaces", "--wait=false", check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pods = self.plane.kubectl_json("get", "pods", "--all-namespaces")["items"]
            if not pods:
                return
            time.sleep(0.5)

    def _remove_containers(self) -> None:
        """What the kubelet left in containerd: kill every task, delete it and its container."""
        tasks = self._ctr("tasks", "list", "--quiet", check=False).stdout.split()
        for task in tasks:
            self._ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        for task in tasks:
            self._ctr("tasks", "delete", "--force", task, check=False)
        for container in self._ctr("containers", "list", "--quiet", check=False).stdout.split():
            self._ctr("containers", "delete", container, check=False)

    def _kill_shims(self) -> None:
        for pid in shims_of(self.socket):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _remove_proxy_rules(self) -> None:
        """kube-proxy's iptables rules; --cleanup leaves the (empty) KUBE-FIREWALL chain and its jumps."""
        subprocess.run([str(self.binaries.kube_proxy), "--cleanup"], capture_output=True, check=False, timeout=60)
        for iptables in ("iptables", "ip6tables"):
            for chain in ("INPUT", "OUTPUT"):
                subprocess.run([iptables, "-D", chain, "-j", "KUBE-FIREWALL"], capture_output=True, check=False)
            subprocess.run([iptables, "-X", "KUBE-FIREWALL"], capture_output=True, check=False)

    def _unmount_all(self) -> None:
        for mount in reversed(mounts_under(self.workdir)):
            subprocess.run(["umount", "--lazy", mount], capture_output=True, check=False)

    def leftovers(self) -> dict[str, list[Any]]:
        """What a stopped node must not leave behind (empty lists when all is well)."""
        return {
            "shims": shims_of(self.socket),
            "mounts": mounts_under(self.workdir),
            "daemons": [d.name for d in self._daemons if d.running()],
            "relays": [relay.address for relay in self._relays if relay.running()],
            "iptables": iptables_kube_rules(),
        }


def _remove_bridge() -> None:
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)


def _make_bridge() -> None:
    """The CNI bridge with its gateway address, before any pod: host services can listen on
    ``HOST_ADDRESS`` from the start (the bridge plugin keeps a bridge and address it finds)."""
    _remove_bridge()  # an interrupted run's
    for argv in (
        ["ip", "link", "add", BRIDGE, "type", "bridge"],
        ["ip", "addr", "add", f"{HOST_ADDRESS}/{POD_SUBNET.split('/')[1]}", "dev", BRIDGE],
        ["ip", "link", "set", BRIDGE, "up"],
    ):
        subprocess.run(argv, capture_output=True, check=True)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


def iptables_kube_rules() -> list[str]:
    """KUBE-* lines in the host's iptables and ip6tables (filter, nat, mangle)."""
    found = []
    for iptables in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            result = subprocess.run([iptables, "-t", table, "-S"], capture_output=True, text=True, check=False)
            found += [f"{iptables} {table}: {line}" for line in result.stdout.splitlines() if "KUBE-" in line]
    return found


def host_ip() -> str:
    """This machine's address on its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        return str(probe.getsockname()[0])


def image_root() -> Path:
    """The containerd root kept between sessions, outside the checkout, keyed by containerd's version."""
    version = subprocess.run(["containerd", "--version"], capture_output=True, text=True, check=True).stdout.split()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "outbound-messaging" / "node" / f"containerd-{version[2]}"


def shims_of(socket: Path) -> list[int]:
    """PIDs of containerd-shim processes started for the containerd listening on ``socket``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and b"containerd-shim" in argv[0] and str(socket).encode() in argv:
            found.append(int(entry.name))
    return found


def mounts_under(folder: Path) -> list[str]:
    """Mount points at or below ``folder``, in the order they were mounted."""
    prefix = str(folder.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return points


def _remove_kubelet_cgroups() -> None:
    """The kubelet's QoS cgroups (``kubepods``) in every v1 hierarchy, deepest first, if empty."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / "kubepods"
        if not top.is_dir():
            continue
        for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
