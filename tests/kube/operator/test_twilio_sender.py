"""ChannelProvider `twilio.from` on a running worker: the live Twilio worker the operator rendered
sends from that number, against the Twilio sandbox over https (its real wire format, every request
recorded), and the API server refuses a second sender beside it.

The worker runs as a host process (workers.rendered_worker): the sandbox listens on loopback with a
certificate of the plane's CA, which the worker trusts through SSL_CERT_FILE, a file of its
credentials Secret, as the end-to-end run does on the node.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import asyncpg
import pytest

from outbound_sender.sandboxes import twilio as twilio_sandbox
from tests.kube.e2e.sandboxes import ProviderSandboxes, token
from tests.kube.manifests import channel_provider
from tests.kube.pki import issue_server_certificate
from tests.kube.plane import ControlPlane

from .support import eventually, get
from .workers import FAST_WORKER_ENV

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("operator")]
Workers = Callable[[str], AbstractContextManager[None]]

CA_KEY = "ca.crt"
CA_FILE = f"/var/run/secrets/outbound/provider/{CA_KEY}"  # the credentials Secret's mount (reconcile/workload.py)
MESSAGES = 3


@pytest.fixture
def sandboxes(plane: ControlPlane, tmp_path: Path) -> Iterator[ProviderSandboxes]:
    certificate, key = issue_server_certificate(plane.pki, tmp_path / "tls", "provider-sandboxes", ["127.0.0.1"])
    running = ProviderSandboxes(certificate, key, host="127.0.0.1").start()
    try:
        yield running
    finally:
        running.stop()


def twilio_credentials(plane: ControlPlane, namespace: str) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "twilio-credentials"},
        "stringData": {
            "accountSid": twilio_sandbox.ACCOUNT_SID,
            "authToken": twilio_sandbox.AUTH_TOKEN,
            CA_KEY: plane.pki.ca_cert.read_text(),
        },
    }
    plane.apply([secret], namespace=namespace)


async def _sent(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM outbound_message WHERE status = 'SENT'")
    return count


async def test_twilio_from_is_the_number_the_rendered_worker_sends_from(
    plane: ControlPlane,
    namespace: str,
    db: asyncpg.Connection,
    sandboxes: ProviderSandboxes,
    rendered_workers: Workers,
) -> None:
    twilio_credentials(plane, namespace)
    spec = {
        "channel": "SMS",
        "provider": "twilio",
        "endpoint": sandboxes.url("twilio"),
        "credentialsSecretRef": {"name": "twilio-credentials"},
        "twilio": {"from": twilio_sandbox.FROM_NUMBER},
        "env": [*FAST_WORKER_ENV, {"name": "SSL_CERT_FILE", "value": CA_FILE}],
    }
    plane.apply(channel_provider("twilio", spec), namespace=namespace)
    await eventually(lambda: get(plane, namespace, "deployment", "twilio-sender"), timeout=60)
    await db.executemany(
        "INSERT INTO outbound_message (org_id, channel, to_recipient, body) VALUES ('acme', 'SMS', $1, $2)",
        [(f"+1555128{n:04d}", f"hello {token(n)}") for n in range(MESSAGES)],
    )
    with rendered_workers("twilio"):
        await eventually(lambda: _sent_is(db, MESSAGES), timeout=90)

    accepted = sandboxes.recorded["twilio"].accepted()
    # Each message reached Twilio exactly once: none lost, none sent twice.
    assert sorted(n for call in accepted for n in call.tokens) == list(range(MESSAGES))
    forms = [urllib.parse.parse_qs(call.body.decode()) for call in accepted]
    assert all(form["From"] == [twilio_sandbox.FROM_NUMBER] for form in forms), forms
    assert not any("MessagingServiceSid" in form for form in forms), forms

    # A Messaging Service beside the number is refused by the API server, and the spec stays as it was.
    patch = f'{{"spec":{{"twilio":{{"messagingServiceSid":"{twilio_sandbox.MESSAGING_SERVICE_SID}"}}}}}}'
    refused = plane.kubectl(
        "patch", "channelprovider", "twilio", "-n", namespace, "--type", "merge", "-p", patch, check=False
    )
    assert refused.returncode != 0
    assert "twilio needs exactly one of messagingServiceSid or from" in refused.stderr
    provider = get(plane, namespace, "channelprovider", "twilio")
    assert provider is not None
    assert provider["spec"]["twilio"] == {"from": twilio_sandbox.FROM_NUMBER}


async def _sent_is(db: asyncpg.Connection, expected: int) -> bool:
    return await _sent(db) == expected
