"""Fixtures of the image tests: ``images`` (session) and ``run_container`` (see fixtures.py)."""

from .fixtures import images, run_container

__all__ = ["images", "run_container"]
