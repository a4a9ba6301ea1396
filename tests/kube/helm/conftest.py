"""Fixtures of the chart tests: the Prometheus Operator kinds stubbed once per session."""

from __future__ import annotations

import pytest

from tests.kube.plane import ControlPlane

from .support import install_monitoring_stubs


@pytest.fixture(scope="session")
def monitoring_crds(plane: ControlPlane) -> None:
    install_monitoring_stubs(plane)
