"""A private image registry for the test node: Debian's ``docker-registry`` (distribution 2.8),
serving https with a certificate of the plane's CA and asking every client for a user and password
(an htpasswd file of bcrypt hashes), on an address the node reaches (``HOST_ADDRESS``).

Images are pushed to it with ``podman push``; the node's containerd is told to trust the CA for its
address (``Node.trust_registry``), so a pod naming one of its images makes the kubelet pull it with
the pod's ``imagePullSecrets``, as from any private registry.

The registry's storage is kept between sessions outside the checkout
(``~/.cache/outbound-messaging/registry/``) together with the ID of the image it holds: pushing the
same image again uploads nothing (podman finds every layer there already), and a different image
empties it first, so it never holds more than one build. The registry runs as a child process with
its own session, stopped by its PID.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt

from .node import HOST_ADDRESS
from .pki import PkiFiles, issue_server_certificate
from .processes import Daemon, wait_until

BINARY = Path("/usr/bin/docker-registry")
START_TIMEOUT = 60.0
PUSH_TIMEOUT = 900.0
# The registry checks the password of every request (each layer of a pull): a test password needs
# no slow hash, the lowest bcrypt cost is enough.
BCRYPT_ROUNDS = 4
MANIFESTS = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"


class RegistryMissingError(RuntimeError):
    """docker-registry is not installed."""


def storage_root() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "outbound-messaging" / "registry"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class Registry:
    """One registry with one user; ``start()`` returns once it answers https (with 401: no login)."""

    def __init__(self, workdir: Path, pki: PkiFiles, *, user: str = "puller", host: str = HOST_ADDRESS) -> None:
        if not os.access(BINARY, os.X_OK):
            raise RegistryMissingError(f"missing {BINARY}: run `make images-deps` (Debian package docker-registry)")
        self.workdir, self.pki, self.user, self.host = workdir, pki, user, host
        self.password = secrets.token_urlsafe(18)
        self.storage = storage_root() / "storage"
        self.address = ""  # host:port once started
        self._daemon: Daemon | None = None

    def start(self) -> Registry:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cert, key = issue_server_certificate(self.pki, self.workdir, "registry", [self.host, "127.0.0.1"])
        htpasswd = self.workdir / "htpasswd"
        digest = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()
        htpasswd.write_text(f"{self.user}:{digest}\n")
        self.storage.mkdir(parents=True, exist_ok=True)
        self.address = f"{self.host}:{_free_port(self.host)}"
        config = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": self.address,
                "secret": secrets.token_hex(16),
                "tls": {"certificate": str(cert), "key": str(key)},
            },
            "auth": {"htpasswd": {"realm": "outbound-test", "path": str(htpasswd)}},
        }
        config_path = self.workdir / "registry.json"  # YAML is a superset of JSON
        config_path.write_text(json.dumps(config))
        self._daemon = Daemon("docker-registry", [str(BINARY), "serve", str(config_path)], self.workdir)
        self._daemon.start()
        try:
            wait_until(lambda: self._answers() == 401, daemon=self._daemon, what="registry", timeout=START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self, path: str = "/v2/", *, login: bool = False) -> int | None:
        """The HTTP status of ``HEAD <path>`` (None: no answer yet), with the user's login if ``login``."""
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        request = urllib.request.Request(f"https://{self.address}{path}", method="HEAD", headers={"Accept": MANIFESTS})
        if login:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:
            return None

    def push(self, image: str, repository: str, tag: str, podman_env: dict[str, str]) -> str:
        """Push ``image`` from podman's store as ``<address>/<repository>:<tag>``; returns that reference."""
        image_id = subprocess.run(
            ["podman", "image", "inspect", "--format", "{{.Id}}", image],
            env=podman_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        held = storage_root() / "image-id"
        reference = f"{self.address}/{repository}:{tag}"
        if held.exists() and held.read_text() == image_id:
            if self._answers(f"/v2/{repository}/manifests/{tag}", login=True) == 200:
                return reference  # pushed by an earlier session (podman, seeing a new port, would upload again)
        else:
            shutil.rmtree(self.storage)  # another build: one image is kept, not every one
            self.storage.mkdir(parents=True)
        certs = self.workdir / "podman-certs"  # podman trusts the *.crt files of --cert-dir
        certs.mkdir(exist_ok=True)
        shutil.copyfile(self.pki.ca_cert, certs / "ca.crt")
        argv = ["podman", "push", "--quiet", "--cert-dir", str(certs), "--creds", f"{self.user}:{self.password}"]
        pushed = subprocess.run(
            [*argv, image, f"docker://{reference}"],
            env=podman_env,
            capture_output=True,
            text=True,
            check=False,
            timeout=PUSH_TIMEOUT,
        )
        if pushed.returncode != 0:
            raise RuntimeError(f"podman push {reference} failed: {pushed.stderr[-2000:]}")
        held.write_text(image_id)
        return reference

    def log(self) -> str:
        daemon = self._daemon
        if daemon is None or not daemon.log_path.exists():
            return ""
        return daemon.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self._daemon is not None and self._daemon.running()

    def stop(self) -> None:
        if self._daemon is not None:
            self._daemon.stop()
