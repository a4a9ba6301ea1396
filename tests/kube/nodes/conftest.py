"""The ``node`` fixture (session): a kubelet node with containerd on the test plane (tests/kube/node.py)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.images.containers import IMAGES_SCRIPT, Images
from tests.images.fixtures import images
from tests.kube.node import Node, find_node_binaries, image_root
from tests.kube.plane import ControlPlane
from tests.kube.tools import MissingBinariesError

__all__ = ["images", "node"]


def pause_image(images: Images) -> str:
    result = subprocess.run([str(IMAGES_SCRIPT), "pause"], env=images.env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"hack/images.sh pause failed: {result.stderr[-2000:]}", pytrace=False)
    return result.stdout.strip().rsplit("PAUSE_IMAGE=", 1)[1]


@pytest.fixture(scope="session")
def node(plane: ControlPlane, images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    try:
        binaries = find_node_binaries()
    except MissingBinariesError as error:
        pytest.fail(str(error), pytrace=False)
    running = Node(plane, binaries, tmp_path_factory.mktemp("kube-node"), image_root(), images.env)
    started = time.monotonic()
    running.start(pause_image(images))
    print(f"node {running.workdir}: Ready in {time.monotonic() - started:.1f} s")
    yield running
    running.stop()
    leftovers = running.leftovers()
    assert not any(leftovers.values()), f"the node left {leftovers}"
