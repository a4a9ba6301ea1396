"""Fixtures of the image tests (imported by tests/images/conftest.py and by the operator image test)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from .containers import Container, Images, built_images


class Runner:
    """Starts containers of ``images`` for one test, with logs in ``workdir``; stops them all at the end."""

    def __init__(self, images: Images, workdir: Path) -> None:
        self.images, self.workdir = images, workdir
        self.started: list[Container] = []

    def __call__(
        self,
        image: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        volumes: Mapping[Path, str] | None = None,
    ) -> Container:
        container = Container(self.images, image, args, env=env, volumes=volumes, logdir=self.workdir)
        self.started.append(container)
        container.start()
        return container

    def stop_all(self) -> None:
        for container in self.started:
            container.stop()
            print(f"---- {container.name} {container.args or '(default command)'} ----\n{container.log()[-4000:]}")


@pytest.fixture(scope="session")
def images() -> Images:
    """The sender and operator images of the current sources (`make images`)."""
    return built_images()


@pytest.fixture
def run_container(images: Images, tmp_path: Path) -> Iterator[Runner]:
    """Start containers; each one is stopped, removed and checked gone when the test ends."""
    runner = Runner(images, tmp_path)
    yield runner
    runner.stop_all()
