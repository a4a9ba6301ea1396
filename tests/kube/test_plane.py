"""The test plane itself: real binaries, stamped version, clean teardown, clear failures."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from .plane import ControlPlane, running_plane
from .tools import MissingBinariesError, find_binaries, read_versions, tools_dir

pytestmark = pytest.mark.kube


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _is_zombie_or_gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "State:\tZ" in status.read_text()


def test_version_is_stamped(plane: ControlPlane) -> None:
    if os.environ.get("KUBEBUILDER_ASSETS"):
        pytest.skip("KUBEBUILDER_ASSETS brings its own kube-apiserver version")
    version = plane.kubectl_json("version")["serverVersion"]
    expected = read_versions()["KUBERNETES_VERSION"]
    assert version["gitVersion"] == expected
    assert (version["major"], version["minor"]) == ("1", expected.split(".")[1])


def test_admin_is_system_masters(plane: ControlPlane) -> None:
    user = plane.kubectl_json("auth", "whoami")["status"]["userInfo"]
    assert "system:masters" in user["groups"]
    assert plane.kubectl("auth", "can-i", "*", "*").stdout.strip() == "yes"


def test_each_test_gets_its_own_namespace(plane: ControlPlane, namespace: str) -> None:
    assert namespace.startswith("test-each-test-gets-its-own-namespace-")
    assert plane.kubectl_json("get", "namespace", namespace)["status"]["phase"] == "Active"


def test_namespace_deletion_completes(plane: ControlPlane) -> None:
    if not plane.has_controller_manager:
        pytest.skip("namespace deletion needs kube-controller-manager")
    name = plane.create_namespace("doomed")
    plane.kubectl("create", "configmap", "c", "-n", name)
    plane.kubectl("delete", "namespace", name, "--timeout=60s")
    assert plane.kubectl("get", "namespace", name, "--ignore-not-found").stdout == ""


def test_garbage_collector_removes_owned_objects(plane: ControlPlane, namespace: str) -> None:
    if not plane.has_controller_manager:
        pytest.skip("garbage collection needs kube-controller-manager")
    owner = plane.kubectl_json("create", "configmap", "owner", "-n", namespace)
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    child = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "child", "ownerReferences": [ref]}}
    plane.apply(child, namespace=namespace)
    plane.kubectl("delete", "configmap", "owner", "-n", namespace)
    plane.kubectl("wait", "--for=delete", "configmap/child", "-n", namespace, "--timeout=60s")


def test_plane_stops_every_process_by_pid(tmp_path: Path) -> None:
    with running_plane(find_binaries(), tmp_path / "plane", controller_manager=False) as second:
        pids = second.pids
        assert set(pids) == {"etcd", "kube-apiserver"}
        assert second.kubectl("get", "--raw", "/readyz").stdout == "ok"
    deadline = time.monotonic() + 5
    while any(_pid_alive(pid) and not _is_zombie_or_gone(pid) for pid in pids.values()):
        assert time.monotonic() < deadline, f"still running: {pids}"
        time.sleep(0.1)


def test_missing_binaries_say_how_to_build_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("OUTBOUND_TOOLS_DIR", str(tmp_path))
    assert tools_dir() == tmp_path
    with pytest.raises(MissingBinariesError, match=r"run `make kube-tools`"):
        find_binaries()


def test_kubebuilder_assets_are_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = find_binaries()
    for name, source in (
        ("etcd", real.etcd),
        ("kube-apiserver", real.kube_apiserver),
        ("kubectl", real.kubectl),
    ):
        (tmp_path / name).symlink_to(source)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    found = find_binaries()
    assert (found.etcd, found.kube_apiserver, found.kubectl) == (
        tmp_path / "etcd",
        tmp_path / "kube-apiserver",
        tmp_path / "kubectl",
    )
    assert found.kube_controller_manager is None
