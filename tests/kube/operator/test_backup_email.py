"""E-mail failover between two real providers, and the backup's sender settings on its running worker.

SendGrid (priority 10) sends; `kubectl patch` opens its circuit by hand (the runbook's switch to the
backup provider); Amazon SES (priority 20) sends the rest. The operator (as its ServiceAccount)
renders both workers, which run as it rendered them (workers.rendered_worker) in live mode, their
credentials and the sandboxes' CA mounted from the Secrets their ChannelProviders name. The
SendGrid and SES sandboxes (the providers' wire formats; SES checks each request's Signature
Version 4 against the account's key, session token and region, and the From identity and the
configuration set against the account's) serve https on loopback and keep every call they answer
(tests/kube/e2e/sandboxes.py), so the test reads what each provider received.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from outbound_sender.sandboxes import sendgrid as sendgrid_sandbox
from outbound_sender.sandboxes import ses as ses_sandbox
from outbound_sender.sandboxes.ses import AUTHORIZATION
from tests.kube.e2e.sandboxes import Call, ProviderSandboxes
from tests.kube.manifests import channel_provider
from tests.kube.pki import issue_server_certificate
from tests.kube.plane import ControlPlane

from .support import controlled, eventually, patch_spec
from .workers import FAST_WORKER_ENV, statuses

pytestmark = [pytest.mark.kube, pytest.mark.timeout(300)]

MESSAGES = 800
LOOPBACK = "127.0.0.1"
CA_KEY = "ca.crt"
CA_FILE = f"/var/run/secrets/outbound/provider/{CA_KEY}"  # the credentials Secret's mount (reconcile/workload.py)
# The SES ChannelProvider's sender settings, none of them the sandbox account's defaults: each one
# reaches SES only through the rendered worker.
SES_REGION = "eu-west-1"
SES_DOMAIN = "acme.example"
SES_FROM_EMAIL = f"billing@{SES_DOMAIN}"
SES_FROM_NAME = "Acme Billing"
SES_CONFIGURATION_SET = "acme-receipts"
SENDGRID_FROM_NAME = "Acme Orders"
FORCE_OPEN = '{"spec":{"circuitBreaker":{"mode":"ForceOpen"}}}'

# Message i carries the mark e2e.sandboxes.token(i) in its text: the sandboxes count sends by it.
EMAILS = """
INSERT INTO outbound_message (org_id, channel, to_recipient, subject, body)
SELECT 'acme', 'EMAIL', 'customer' || i || '@example.com', 'Your receipt',
       'Receipt e2e' || lpad(i::text, 6, '0') || 'x'
  FROM generate_series(1, $1) AS i
"""


@pytest.fixture
def sandboxes(plane: ControlPlane, tmp_path: Path) -> Iterator[ProviderSandboxes]:
    certificate, key = issue_server_certificate(plane.pki, tmp_path / "tls", "provider-sandboxes", [LOOPBACK])
    running = ProviderSandboxes(certificate, key, host=LOOPBACK, providers=("sendgrid", "ses")).start()
    # The SES account: the ChannelProvider's region, its domain verified, its configuration set.
    running.configure(
        "ses",
        region=SES_REGION,
        verified_identities=[SES_DOMAIN],
        configuration_sets={SES_CONFIGURATION_SET: None},
    )
    running.configure("sendgrid", latency_ms=150)  # SendGrid must still have mail to send at the patch
    try:
        yield running
    finally:
        running.stop()


def credential_secrets(plane: ControlPlane, namespace: str) -> None:
    """The Secrets a user creates for the two accounts, each with the CA the sandboxes' certificate
    is issued by (a private CA in front of a provider, trusted through SSL_CERT_FILE)."""
    ca = plane.pki.ca_cert.read_text()
    data = {
        "sendgrid-credentials": {"apiKey": sendgrid_sandbox.API_KEY, CA_KEY: ca},
        "ses-credentials": {
            "accessKeyId": ses_sandbox.ACCESS_KEY_ID,
            "secretAccessKey": ses_sandbox.SECRET_ACCESS_KEY,
            "sessionToken": ses_sandbox.SESSION_TOKEN,
            CA_KEY: ca,
        },
    }
    secrets = [{"kind": "Secret", "metadata": {"name": name}, "stringData": keys} for name, keys in data.items()]
    plane.apply([{"apiVersion": "v1", **secret} for secret in secrets], namespace=namespace)


def email_providers(sandboxes: ProviderSandboxes) -> list[dict[str, Any]]:
    def spec(provider: str, priority: int, **settings: Any) -> dict[str, Any]:
        return {
            "channel": "EMAIL",
            "provider": provider,
            "priority": priority,
            "endpoint": sandboxes.url(provider),
            "credentialsSecretRef": {"name": f"{provider}-credentials"},
            "env": [*FAST_WORKER_ENV, {"name": "SSL_CERT_FILE", "value": CA_FILE}],
            provider: settings,
        }

    return [
        channel_provider(
            "sendgrid", spec("sendgrid", 10, fromEmail=sendgrid_sandbox.FROM_EMAIL, fromName=SENDGRID_FROM_NAME)
        ),
        channel_provider(
            "ses",
            spec(
                "ses",
                20,
                region=SES_REGION,
                fromEmail=SES_FROM_EMAIL,
                fromName=SES_FROM_NAME,
                configurationSetName=SES_CONFIGURATION_SET,
            ),
        ),
    ]


async def settled(db: asyncpg.Connection) -> dict[str, int]:
    """The count of messages by status, once none is left to send (QUEUED or SENDING)."""
    now = await statuses(db)
    assert set(now) <= {"SENT", "FAILED"}, f"messages left to send: {now}"
    return now


def sends(sandboxes: ProviderSandboxes, provider: str) -> list[Call]:
    """The sends the provider accepted (answered 2xx), each with the message numbers it carried."""
    return [call for call in sandboxes.recorded[provider].accepted() if call.tokens]


@pytest.mark.usefixtures("operator")
async def test_force_open_on_sendgrid_hands_email_to_ses_which_sends_as_its_channel_provider_says(
    plane: ControlPlane,
    namespace: str,
    db: asyncpg.Connection,
    sandboxes: ProviderSandboxes,
    rendered_workers: Callable[[str], AbstractContextManager[None]],
) -> None:
    credential_secrets(plane, namespace)
    plane.apply(email_providers(sandboxes), namespace=namespace)
    await controlled(plane, namespace, db, "sendgrid", "ses")
    await db.execute(EMAILS, MESSAGES)
    with rendered_workers("sendgrid"), rendered_workers("ses"):
        await eventually(lambda: len(sends(sandboxes, "sendgrid")) >= 60, timeout=60)
        assert sends(sandboxes, "ses") == []  # the backup stands by while SendGrid is usable
        patched = time.time()
        patch_spec(plane, namespace, "sendgrid", FORCE_OPEN)
        final = await eventually(lambda: settled(db), timeout=180)
        await asyncio.sleep(1)  # any late answer of a provider has been recorded
    assert final == {"SENT": MESSAGES}
    by_sendgrid, by_ses = sends(sandboxes, "sendgrid"), sends(sandboxes, "ses")
    # Failover: SES took over only after the patch, and SendGrid stopped within the ForceOpen bound.
    assert by_ses, "SendGrid drained the queue before the patch: nothing failed over"
    first_ses = min(call.at for call in by_ses) - patched
    print(
        f"EMAIL failover: {len(by_sendgrid)} sent by SendGrid, {len(by_ses)} by SES; "
        f"first SES send {first_ses:.3f} s after kubectl patch"
    )
    assert first_ses > 0
    assert max(call.at for call in by_sendgrid) - patched < 5.0
    # Every message sent exactly once: one provider call each, one attempt each, none lost.
    accepted = Counter(number for call in by_sendgrid + by_ses for number in call.tokens)
    assert set(accepted) == set(range(1, MESSAGES + 1)), f"lost: {set(range(1, MESSAGES + 1)) - set(accepted)}"
    assert [n for n, times in accepted.items() if times > 1] == [], "sent twice"
    attempts = await db.fetch(
        "SELECT provider, count(*) AS n, max(per) AS most FROM ("
        " SELECT outbound_message_id, provider, count(*) AS per FROM outbound_attempt GROUP BY 1, 2"
        ") a GROUP BY provider"
    )
    assert {r["provider"]: (r["n"], r["most"]) for r in attempts} == {
        "sendgrid": (len(by_sendgrid), 1),
        "ses": (len(by_ses), 1),
    }
    sent_by = await db.fetch("SELECT provider, count(*) AS n FROM outbound_message GROUP BY provider")
    assert {r["provider"]: r["n"] for r in sent_by} == {"sendgrid": len(by_sendgrid), "ses": len(by_ses)}
    the_backup_sends_as_its_channel_provider_says(sandboxes, by_ses)


def the_backup_sends_as_its_channel_provider_says(sandboxes: ProviderSandboxes, by_ses: list[Call]) -> None:
    """spec.ses and the credentials Secret, as SES received them from the running worker."""
    for call in by_ses:
        body = json.loads(call.body)
        signed = AUTHORIZATION.match(call.header("authorization") or "")
        assert signed is not None, call.header("authorization")
        # credentialsSecretRef: the Secret's key id and session token sign every request.
        assert signed["key"] == ses_sandbox.ACCESS_KEY_ID
        assert call.header("x-amz-security-token") == ses_sandbox.SESSION_TOKEN
        # ses.region: the SigV4 credential scope (the host is spec.endpoint's: region names it
        # only when no endpoint is given).
        assert (signed["region"], signed["service"]) == (SES_REGION, "ses")
        assert call.header("host") == sandboxes.url("ses").removeprefix("https://")
        # ses.fromEmail and ses.fromName: the From of every message.
        assert body["FromEmailAddress"] == f"{SES_FROM_NAME} <{SES_FROM_EMAIL}>"
        # ses.configurationSetName: the set whose event destination publishes the delivery events.
        assert body["ConfigurationSetName"] == SES_CONFIGURATION_SET
        assert body["Destination"]["ToAddresses"] == [f"customer{call.tokens[0]}@example.com"]
    sendgrid = {"email": sendgrid_sandbox.FROM_EMAIL, "name": SENDGRID_FROM_NAME}
    assert all(json.loads(call.body)["from"] == sendgrid for call in sends(sandboxes, "sendgrid"))
