"""What a user does, end to end, on the test node (docs/kubernetes-testing.md, "The end-to-end run").

`helm install` of the chart with the images built here (CRDs, the HA operator, the API, monitoring
objects); Secrets and ChannelProviders for Twilio, SendGrid and WhatsApp in live mode, with Vonage as
the SMS backup, pointed at the provider sandboxes served over https from the host; messages created
through the API's Service are sent by the worker pods the operator created, and the providers'
receipts come back through the public webhook URL to the API pods. Then, on the same install:
ForceOpen fails SMS over to Vonage; queue depth scales the e-mail workers up and down; `helm upgrade`
rolls every pod without losing a message; a QuotaPolicy holds WhatsApp sends; the leader operator
pod is deleted and the other replica reconciles the next change; `helm uninstall` leaves nothing.

Across the whole run every message created is accepted by exactly one provider (the sandboxes record
every send with the message's token) and ends SENT with a DELIVERED receipt: lost and duplicated
messages are counted and printed with the timings. The client registered a callback URL first: the
chart's callback dispatcher pods tell it of every message, signed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import itertools
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from outbound_sender.api.auth import create_key
from outbound_sender.embedded import EmbeddedRedis
from outbound_sender.quota.ratelimit import GCRA_TWO_KEYS
from outbound_sender.sandboxes import sendgrid as sendgrid_sandbox
from outbound_sender.sandboxes import twilio as twilio_sandbox
from outbound_sender.sandboxes import vonage as vonage_sandbox
from outbound_sender.sandboxes import whatsapp as whatsapp_sandbox
from tests.images.containers import Images
from tests.integration.callbacks.receiver import signed_by
from tests.kube.helm.support import helm, install_monitoring_stubs, values_file
from tests.kube.node import HOST_ADDRESS, TOLERATION, Node
from tests.kube.pki import issue_server_certificate
from tests.kube.plane import ControlPlane
from tests.kube.relay import Relay
from tests.unit.helm.chart import CHART

from .callbacks import CallbackReceiver
from .sandboxes import ProviderSandboxes, token

pytestmark = [pytest.mark.kube, pytest.mark.images, pytest.mark.timeout(1500)]

ORG = "acme"
DELIVERED = ("DELIVERED", "READ")  # a WhatsApp read receipt ranks above delivered
CA_KEY = "ca.crt"
CA_FILE = f"/var/run/secrets/outbound/provider/{CA_KEY}"  # the credentials Secret's mount (reconcile/workload.py)
WORKER_CONFIG_HASH = "messaging.outbound.dev/config-hash"


# -- the pieces: images, values, secrets ---------------------------------------------------------


def repository_and_tag(image: str) -> dict[str, str]:
    repository, tag = image.rsplit(":", 1)
    return {"repository": repository, "tag": tag, "pullPolicy": "Never"}


# Sender settings the run checks in what the providers received (send_and_deliver).
WHATSAPP_API_VERSION = "v22.0"
SENDGRID_FROM_NAME = "Acme Orders"
SENDGRID_KEY_NAME = "sendgrid-api-key"
WORKER_MEMORY_LIMIT = "300Mi"
# The Vonage account signs with SHA-512 (not the default md5hash): the sandbox refuses requests and
# signs receipts that way, so the workers and the API must follow spec.vonage.signatureMethod.
VONAGE_SIGNED_WITH = "sha512"


def channel_providers(sandboxes: ProviderSandboxes) -> dict[str, Any]:
    """Live providers on the sandboxes; the workers trust the sandboxes' CA through SSL_CERT_FILE
    (a file of their credentials Secret), as they would a private CA in front of a provider."""

    def spec(provider: str, channel: str, priority: int, **extra: Any) -> dict[str, Any]:
        return {
            "channel": channel,
            "provider": provider,
            "priority": priority,
            "endpoint": sandboxes.url(provider),
            "credentialsSecretRef": {"name": f"{provider}-credentials"},
            "tolerations": [TOLERATION],
            "env": [{"name": "SSL_CERT_FILE", "value": CA_FILE}],
            "circuitBreaker": {"mode": "Auto"},
            **extra,
        }

    return {
        "twilio": spec("twilio", "SMS", 10, twilio={"messagingServiceSid": twilio_sandbox.MESSAGING_SERVICE_SID}),
        "vonage": spec(
            "vonage", "SMS", 20, vonage={"from": vonage_sandbox.FROM_NUMBER, "signatureMethod": VONAGE_SIGNED_WITH}
        ),
        "whatsapp": spec(
            "whatsapp",
            "WHATSAPP",
            10,
            whatsapp={"phoneNumberId": whatsapp_sandbox.PHONE_NUMBER_ID, "apiVersion": WHATSAPP_API_VERSION},
            resources={"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": WORKER_MEMORY_LIMIT}},
        ),
        "sendgrid": spec(
            "sendgrid",
            "EMAIL",
            10,
            sendgrid={"fromEmail": sendgrid_sandbox.FROM_EMAIL, "fromName": SENDGRID_FROM_NAME},
            # The API key under a Secret key of the user's choosing.
            credentialsSecretRef={"name": "sendgrid-credentials", "keys": {"apiKey": SENDGRID_KEY_NAME}},
            scaling={
                "replicas": {"min": 1, "max": 3, "managedBy": "Operator"},
                "targetQueueDepthPerReplica": 40,
            },
        ),
    }


def chart_values(images: Images, sandboxes: ProviderSandboxes, public_url: str) -> dict[str, Any]:
    placed = {"tolerations": [TOLERATION]}
    return {
        "sender": {"image": repository_and_tag(images.sender)},
        "redis": {"existingSecret": "outbound-redis"},
        "api": {
            **placed,
            "replicas": 1,
            "webhookPublicUrl": public_url,
            "webhookProviders": ["twilio", "sendgrid", "whatsapp", "vonage"],
            "envFromSecret": "outbound-webhooks",
        },
        "operator": {
            **placed,
            "image": repository_and_tag(images.operator),
            "reconcileIntervalSeconds": 1,
            "scaleDownCooldownSeconds": 5,
        },
        "migrations": placed,
        # The client's callback receiver is on the node's host address, a private one.
        "callbacks": {**placed, "allowPrivateAddresses": True},
        "monitoring": {
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "grafanaDashboard": {"enabled": True},
        },
        "channelProviders": channel_providers(sandboxes),
    }


def create_secrets(plane: ControlPlane, namespace: str, database_url: str, redis_url: str) -> None:
    ca = plane.pki.ca_cert.read_text()
    secrets = {
        "outbound-database": {"url": database_url},
        "outbound-redis": {"url": redis_url},
        "twilio-credentials": {
            "accountSid": twilio_sandbox.ACCOUNT_SID,
            "authToken": twilio_sandbox.AUTH_TOKEN,
            CA_KEY: ca,
        },
        "vonage-credentials": {
            "apiKey": vonage_sandbox.API_KEY,
            "apiSecret": vonage_sandbox.API_SECRET,
            "signatureSecret": vonage_sandbox.SIGNATURE_SECRET,
            CA_KEY: ca,
        },
        "sendgrid-credentials": {SENDGRID_KEY_NAME: sendgrid_sandbox.API_KEY, CA_KEY: ca},
        "whatsapp-credentials": {
            "accessToken": whatsapp_sandbox.ACCESS_TOKEN,
            "appSecret": whatsapp_sandbox.APP_SECRET,
            CA_KEY: ca,
        },
        # What the API pods verify the providers' webhooks with (api.envFromSecret).
        "outbound-webhooks": {
            "TWILIO_AUTH_TOKEN": twilio_sandbox.AUTH_TOKEN,
            "SENDGRID_WEBHOOK_PUBLIC_KEY": sendgrid_sandbox.verification_key(),
            "WHATSAPP_APP_SECRET": whatsapp_sandbox.APP_SECRET,
            "WHATSAPP_VERIFY_TOKEN": whatsapp_sandbox.VERIFY_TOKEN,
            "VONAGE_SIGNATURE_SECRET": vonage_sandbox.SIGNATURE_SECRET,
            "VONAGE_SIGNATURE_METHOD": VONAGE_SIGNED_WITH,
        },
    }
    items = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "stringData": data}
        for name, data in secrets.items()
    ]
    plane.apply(items, namespace=namespace)


# -- waiting and reading state -------------------------------------------------------------------


def wait_for(check: Callable[[], Any], what: str, timeout: float = 180.0, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy (returned); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(interval)
    return found


def query(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(dsn)
        try:
            return list(await connection.fetch(sql, *args))
        finally:
            await connection.close()

    return asyncio.run(run())


def parse_time(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@dataclass
class Run:
    """One install and everything the test did through it."""

    plane: ControlPlane
    namespace: str
    dsn: str
    sandboxes: ProviderSandboxes
    ingress: Relay  # the public webhook URL's "load balancer" in front of the API's Service
    callbacks: CallbackReceiver  # the API client's endpoint for delivery callbacks
    redis: str  # the Redis of the chart's existingSecret, as this test reaches it
    release: str = "outbound"
    api: str = ""
    key: str = ""
    callback_secret: str = ""
    created: dict[int, int] = field(default_factory=dict)  # token number -> message id
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    figures: dict[str, str] = field(default_factory=dict)

    @property
    def full(self) -> str:
        return f"{self.release}-outbound-messaging"

    def helm_with_values(self, verb: str, values: dict[str, Any], tmp_path: Path) -> None:
        """`helm install|upgrade --wait` of the chart with ``values``."""
        args = [verb, self.release, str(CHART), "-n", self.namespace, "-f", values_file(tmp_path, values)]
        helm(self.plane, *args, "--wait", "--timeout", "6m", timeout=420)

    def get(self, kind: str, name: str) -> Any:
        return self.plane.kubectl_json("get", kind, name, "-n", self.namespace)

    def pods(self, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.plane.kubectl_json("get", "pods", "-n", self.namespace, "-l", selector)[
            "items"
        ]
        return items

    def ready_pods(self, selector: str) -> list[dict[str, Any]]:
        def ready(pod: dict[str, Any]) -> bool:
            conditions = pod.get("status", {}).get("conditions") or []
            return not pod["metadata"].get("deletionTimestamp") and any(
                c["type"] == "Ready" and c["status"] == "True" for c in conditions
            )

        return [pod for pod in self.pods(selector) if ready(pod)]

    def worker_pods(self, provider: str) -> str:
        return f"app.kubernetes.io/component=worker,app.kubernetes.io/instance={provider}"

    def available(self, deployment: str) -> int:
        status = self.get("deployment", deployment).get("status", {})
        return int(status.get("availableReplicas") or 0)

    # -- messages through the API's Service --

    def message(self, channel: str) -> tuple[int, dict[str, Any]]:
        number = next(self.numbers)
        text = f"order {token(number)} is ready"
        if channel == "SMS":
            return number, {"channel": "SMS", "to": f"+1202555{number % 10000:04d}", "body": text}
        if channel == "WHATSAPP":
            return number, {"channel": "WHATSAPP", "to": f"+1202666{number % 10000:04d}", "body": text}
        return number, {"channel": "EMAIL", "to": f"user{number}@example.com", "subject": "e2e", "body": text}

    def create(self, channel: str, *, timeout: float = 120.0) -> int:
        """POST /v1/messages with an Idempotency-Key, retried through API restarts: one message."""
        number, payload = self.message(channel)
        headers = {"Authorization": f"Bearer {self.key}", "Idempotency-Key": f"e2e-{number}"}
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = httpx.post(f"{self.api}/v1/messages", json=payload, headers=headers, timeout=10)
                if answer.status_code in (200, 201):
                    self.created[number] = int(answer.json()["id"])
                    return number
                assert answer.status_code >= 500, answer.text  # a 4xx is a defect of the test or the API
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the API did not take message {number} within {timeout:.0f} s"
            time.sleep(0.5)

    def create_batch(self, channel: str, count: int) -> list[int]:
        pairs = [self.message(channel) for _ in range(count)]
        headers = {"Authorization": f"Bearer {self.key}"}
        answer = httpx.post(
            f"{self.api}/v1/messages/batch", json={"messages": [p for _, p in pairs]}, headers=headers, timeout=60
        )
        assert answer.status_code == 201, answer.text
        for (number, _), created in zip(pairs, answer.json()["messages"], strict=True):
            self.created[number] = int(created["id"])
        return [number for number, _ in pairs]

    def undelivered(self, numbers: list[int] | None = None) -> list[asyncpg.Record]:
        ids = [self.created[n] for n in (numbers if numbers is not None else self.created)]
        rows = query(
            self.dsn,
            "SELECT id, channel, status, delivery_status FROM outbound_message WHERE id = ANY($1::bigint[])",
            ids,
        )
        missing = set(ids) - {row["id"] for row in rows}
        assert not missing, f"messages the API created are not in the database: {sorted(missing)[:10]}"
        return [row for row in rows if row["status"] != "SENT" or row["delivery_status"] not in DELIVERED]

    def wait_delivered(self, numbers: list[int] | None = None, timeout: float = 180.0) -> None:
        left: list[asyncpg.Record] = []

        def done() -> bool:
            nonlocal left
            left = self.undelivered(numbers)
            return not left

        try:
            wait_for(done, "every message SENT with a DELIVERED receipt", timeout=timeout, interval=1.0)
        except AssertionError as error:
            raise AssertionError(f"{error}; still: {[dict(r) for r in left[:10]]}") from None


class Traffic:
    """Messages created one after another from a thread until stopped (the load during a change)."""

    def __init__(self, run: Run, channels: tuple[str, ...], pause: float = 0.2) -> None:
        self.run, self.channels, self.pause = run, channels, pause
        self.numbers: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="traffic", daemon=True)
        self.error: BaseException | None = None

    def _loop(self) -> None:
        try:
            for channel in itertools.cycle(self.channels):
                if self._stop.is_set():
                    return
                self.numbers.append(self.run.create(channel))
                self._stop.wait(self.pause)
        except BaseException as error:  # reported by stop()
            self.error = error

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(timeout=180)
        if self.error is not None:
            raise self.error
        return self.numbers


# -- the test ------------------------------------------------------------------------------------


@pytest.fixture
def pod_urls(node: Node, db_dsn: str, redis_server: EmbeddedRedis) -> tuple[str, str, str, str]:
    """(this test's database as the test reaches it, and as pods do; its Redis likewise)."""
    return db_dsn, node.expose_url(db_dsn)[1], redis_server.url, node.expose_url(redis_server.url)[1]


@pytest.fixture
def run(
    namespace: str, node: Node, images: Images, pod_urls: tuple[str, str, str, str], tmp_path: Path
) -> Iterator[Run]:
    plane = node.plane
    started = time.monotonic()
    for image in (images.sender, images.operator):
        node.import_image(image)
    imports = f"{time.monotonic() - started:.1f} s"
    certificate, key = issue_server_certificate(plane.pki, tmp_path / "tls", "provider-sandboxes", [HOST_ADDRESS])
    sandboxes = ProviderSandboxes(certificate, key).start()
    sandboxes.configure("vonage", signature_method=VONAGE_SIGNED_WITH)
    # The public webhook URL: what an ingress in front of the API's Service would be (a relay on the
    # host, pointed at the Service's virtual IP once the chart has created it).
    ingress = Relay(HOST_ADDRESS, 8080).start()
    callbacks = CallbackReceiver(HOST_ADDRESS).start()
    dsn, database_url, redis_here, redis_url = pod_urls
    create_secrets(plane, namespace, database_url, redis_url)
    install_monitoring_stubs(plane)
    current = Run(plane, namespace, dsn, sandboxes, ingress, callbacks, redis_here)
    current.figures["image imports into the node"] = imports
    try:
        yield current
    finally:
        ingress.stop()
        callbacks.stop()
        sandboxes.stop()
        for name, value in current.figures.items():
            print(f"e2e {name}: {value}")


def test_a_user_installs_sends_fails_over_scales_upgrades_survives_the_leaders_loss_and_uninstalls(
    run: Run, images: Images, tmp_path: Path
) -> None:
    values = chart_values(images, run.sandboxes, f"http://{run.ingress.address}/webhooks")
    install(run, values, tmp_path)
    send_and_deliver(run)
    twilio_stopped_at = force_open_fails_sms_over_to_vonage(run)
    queue_depth_scales_the_workers(run)
    upgrade_rolls_every_pod(run, values, tmp_path)
    quota_holds_whatsapp_sends(run)
    the_standby_operator_takes_over(run, twilio_stopped_at)
    count_lost_and_duplicated(run)
    callbacks_tell_the_client(run)
    uninstall_leaves_nothing(run)


def install(run: Run, values: dict[str, Any], tmp_path: Path) -> None:
    """1. helm install, waiting for the API and both operator replicas, then for every worker."""
    started = time.monotonic()
    run.helm_with_values("install", values, tmp_path)
    run.figures["helm install --wait"] = f"{time.monotonic() - started:.1f} s"
    cluster_ip = run.get("service", f"{run.full}-api")["spec"]["clusterIP"]
    run.ingress.target_host, run.ingress.target_port = cluster_ip, 8080
    run.api = f"http://{cluster_ip}:8080"
    run.sandboxes.send_webhooks_to(f"http://{run.ingress.address}/webhooks")
    run.key = asyncio.run(_api_key(run.dsn))
    # The client registers its callback URL before it sends anything (the API checks the address).
    answer = httpx.post(
        f"{run.api}/v1/callbacks",
        json={"url": run.callbacks.url, "description": "e2e client"},
        headers={"Authorization": f"Bearer {run.key}"},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    run.callback_secret = answer.json()["secret"]
    for provider in ("twilio", "vonage", "sendgrid", "whatsapp"):
        wait_for(partial(run.available, f"{provider}-sender"), f"{provider}-sender available", 240)
    run.figures["helm install to every worker available"] = f"{time.monotonic() - started:.1f} s"
    run.figures["pod start (created to Ready, server-side)"] = _pod_start_times(run)
    # The operator's worker ServiceAccount (the chart's sender account) is what the pods run as: the
    # API server admitted them under it, so it exists and is the identity their RBAC would apply to.
    accounts = {pod["spec"]["serviceAccountName"] for pod in run.pods("app.kubernetes.io/component=worker")}
    assert accounts == {f"{run.full}-sender"}, accounts


def send_and_deliver(run: Run) -> None:
    """2-3. Messages through the API's Service, sent by the worker pods, DELIVERED by receipt."""
    first = [run.create(channel) for channel in ("SMS", "EMAIL", "WHATSAPP") for _ in range(5)]
    run.wait_delivered(first)
    by_provider = {name: len(recorded.accepted()) for name, recorded in run.sandboxes.recorded.items()}
    assert by_provider == {"twilio": 5, "sendgrid": 5, "whatsapp": 5, "vonage": 0}, by_provider
    the_pods_send_as_their_channel_providers_say(run)


def the_pods_send_as_their_channel_providers_say(run: Run) -> None:
    """The ChannelProvider fields that configure a send, as the provider received it from a worker
    pod: the credentials from the named Secret (the sandboxes refuse any other; SendGrid's under a
    `keys` mapping), Twilio's messaging service, SendGrid's sender and display name, WhatsApp's
    phone number and API version in the path; and the memory limit as the pod's cgroup has it."""
    recorded = run.sandboxes.recorded
    twilio = recorded["twilio"].accepted()
    assert all(call.path == f"/2010-04-01/Accounts/{twilio_sandbox.ACCOUNT_SID}/Messages.json" for call in twilio)
    twilio_forms = [urllib.parse.parse_qs(call.body.decode()) for call in twilio]
    assert all(form["MessagingServiceSid"] == [twilio_sandbox.MESSAGING_SERVICE_SID] for form in twilio_forms)
    sendgrid = [json.loads(call.body) for call in recorded["sendgrid"].accepted()]
    assert all(
        body["from"] == {"email": sendgrid_sandbox.FROM_EMAIL, "name": SENDGRID_FROM_NAME} for body in sendgrid
    ), [body["from"] for body in sendgrid]
    paths = {call.path for call in recorded["whatsapp"].accepted()}
    assert paths == {f"/{WHATSAPP_API_VERSION}/{whatsapp_sandbox.PHONE_NUMBER_ID}/messages"}, paths
    [pod] = run.ready_pods(run.worker_pods("whatsapp"))
    limit = run.plane.kubectl("exec", "-n", run.namespace, pod["metadata"]["name"], "--", *READ_MEMORY_LIMIT)
    assert int(limit.stdout.strip()) == 300 * 1024 * 1024, limit.stdout


# The container's memory limit as the kernel enforces it (cgroup v1 on this machine, v2 elsewhere).
READ_MEMORY_LIMIT = (
    "python3",
    "-c",
    "import pathlib; v1 = pathlib.Path('/sys/fs/cgroup/memory/memory.limit_in_bytes'); "
    "print((v1 if v1.exists() else pathlib.Path('/sys/fs/cgroup/memory.max')).read_text())",
)


def force_open_fails_sms_over_to_vonage(run: Run) -> float:
    """4. ForceOpen on the Twilio ChannelProvider under SMS load: Vonage takes the traffic. Returns
    the time of the patch."""
    twilio, vonage = run.sandboxes.recorded["twilio"], run.sandboxes.recorded["vonage"]
    with Traffic(run, ("SMS",)) as traffic:
        wait_for(lambda: len(twilio.accepted()) >= 10, "Twilio sending under load", 120)
        patched = time.time()
        run.plane.kubectl(
            "patch", "cp", "twilio", "-n", run.namespace, "--type", "merge",
            "-p", '{"spec":{"circuitBreaker":{"mode":"ForceOpen"}}}',
        )  # fmt: skip
        wait_for(lambda: len(vonage.accepted(patched)) >= 10, "Vonage sending after ForceOpen", 180)
    # The backup sends as its ChannelProvider says: its number, its account's key, signed requests.
    forms = [urllib.parse.parse_qs(call.body.decode()) for call in vonage.accepted(patched)]
    assert all(form["from"] == [vonage_sandbox.FROM_NUMBER] for form in forms)
    assert all(form["api_key"] == [vonage_sandbox.API_KEY] and "sig" in form for form in forms)
    after = twilio.accepted(patched)
    stopped = max((call.at for call in after), default=patched) - patched
    run.figures["ForceOpen to the last Twilio send"] = f"{stopped:.2f} s ({len(after)} sends after the patch)"
    # Nothing reaches Twilio any more while SMS keeps flowing through Vonage.
    quiet = [run.create("SMS") for _ in range(5)]
    run.wait_delivered(traffic.numbers + quiet)
    assert len(twilio.accepted(patched)) == len(after)
    return patched


def queue_depth_scales_the_workers(run: Run) -> None:
    """5. A deep e-mail queue on a slow provider (8 s a send, so one pod cannot drain it before others
    start): 3 worker pods start; once the queue is empty they stop (their claims drained: no row left
    SENDING) down to 1."""
    selector = run.worker_pods("sendgrid")
    run.sandboxes.configure("sendgrid", latency_ms=8000)
    started = time.monotonic()
    queued = run.create_batch("EMAIL", 400)
    wait_for(lambda: len(run.ready_pods(selector)) == 3, "3 Ready e-mail worker pods", 240)
    run.figures["scale-up: 400 queued to 3 Ready worker pods"] = f"{time.monotonic() - started:.1f} s"
    run.sandboxes.configure("sendgrid", latency_ms=0)
    started = time.monotonic()
    wait_for(lambda: len(run.pods(selector)) == 1, "scaled down to 1 e-mail worker pod", 300)
    run.figures["scale-down: 3 Ready pods to 1 pod left (queue drained)"] = f"{time.monotonic() - started:.1f} s"
    run.wait_delivered(queued)
    assert not query(run.dsn, "SELECT id FROM outbound_message WHERE status = 'SENDING'")


def upgrade_rolls_every_pod(run: Run, values: dict[str, Any], tmp_path: Path) -> None:
    """7. helm upgrade with a changed worker setting (and the QuotaPolicy): every worker and operator
    pod is replaced while messages keep coming, and none is lost."""
    providers = ("twilio", "vonage", "sendgrid", "whatsapp")
    hashes = {provider: _config_hash(run, provider) for provider in providers}
    operators = {pod["metadata"]["uid"] for pod in run.pods("app.kubernetes.io/component=operator")}
    values["operator"]["providerReadTimeoutSeconds"] = 15
    values["quotaPolicies"] = {
        ORG: {
            "orgId": ORG,
            "tier": "Tier250",
            "dailyLimit": 8,  # 5 WhatsApp messages sent so far: room for 3 more
            "deferNonUrgentAbovePercent": 100,
            "fallbackChannel": "None",
        }
    }
    started = time.monotonic()
    with Traffic(run, ("SMS", "EMAIL")) as traffic:
        run.helm_with_values("upgrade", values, tmp_path)
        for provider, before in hashes.items():
            wait_for(partial(_rolled, run, provider, before), f"{provider}-sender rolled", 240)
    run.figures["helm upgrade to every worker pod rolled"] = f"{time.monotonic() - started:.1f} s"
    assert not operators & {pod["metadata"]["uid"] for pod in run.pods("app.kubernetes.io/component=operator")}
    run.wait_delivered(traffic.numbers)


def quota_holds_whatsapp_sends(run: Run) -> None:
    """6. The QuotaPolicy holds WhatsApp sends beyond its daily limit; a raise releases them."""
    whatsapp = run.sandboxes.recorded["whatsapp"]
    wait_for(
        lambda: query(run.dsn, "SELECT 1 FROM whatsapp_quota_policy WHERE org_id = $1 AND daily_limit = 8", ORG),
        "the QuotaPolicy in force",
        120,
    )
    # The workers keep WhatsApp's per-second limits in the Redis of the chart's existingSecret (the
    # operator's worker Redis Secret), not in a process of their own: with the scripts this Redis
    # knows flushed, only a worker of this release reaching it can load the limiter's script again.
    shared = redis.Redis.from_url(run.redis)
    limiter = hashlib.sha1(GCRA_TWO_KEYS.encode()).hexdigest()
    shared.script_flush()
    held = [run.create("WHATSAPP") for _ in range(6)]
    wait_for(lambda: len(whatsapp.accepted()) == 8, "3 more WhatsApp sends", 120)
    # The third refusal can land a moment after the second: wait for all three, not the first ones.
    wait_for(lambda: len(_quota_held(run, held)) == 3, "3 messages held by the quota (QUOTA_EXCEEDED)", 120)
    assert shared.script_exists(limiter) == [True], "the WhatsApp workers did not use the shared Redis"
    shared.close()
    assert len(whatsapp.accepted()) == 8  # the pods sent nothing beyond the limit
    run.plane.kubectl("patch", "qp", ORG, "-n", run.namespace, "--type", "merge", "-p", '{"spec":{"dailyLimit":20}}')
    run.wait_delivered(held)


def the_standby_operator_takes_over(run: Run, forced_open_at: float) -> None:
    """8. The leader (the highest pod index) is deleted; the other replica reconciles the next change:
    Twilio's circuit back to Auto, after which Twilio sends again."""
    leader, standby = f"{run.full}-operator-1", f"{run.full}-operator-0"
    twilio = run.sandboxes.recorded["twilio"]
    before = len(twilio.accepted(forced_open_at))
    deleted = time.monotonic()
    run.plane.kubectl("delete", "pod", leader, "-n", run.namespace, "--wait=false")
    run.plane.kubectl(
        "patch", "cp", "twilio", "-n", run.namespace, "--type", "merge",
        "-p", '{"spec":{"circuitBreaker":{"mode":"Auto"}}}',
    )  # fmt: skip
    wait_for(
        lambda: query(run.dsn, "SELECT 1 FROM provider_control WHERE provider = 'twilio' AND circuit_mode = 'Auto'"),
        "the change made after the leader's loss reconciled",
        120,
    )
    run.figures["leader pod deleted to the change reconciled"] = f"{time.monotonic() - deleted:.1f} s"
    logs = run.plane.kubectl("logs", standby, "-n", run.namespace).stdout
    assert "Resuming operations" in logs, logs[-3000:]
    # This replica handled the ChannelProviders once it resumed: kopf runs the resume handlers (our
    # reconcile, which applies the current spec) for the objects the paused replica left alone.
    resumed = logs.rsplit("Resuming operations", 1)[1]
    assert re.search(r"Handler '(resume|update)' succeeded", resumed), logs[-3000:]
    back = [run.create("SMS") for _ in range(5)]
    run.wait_delivered(back)
    assert len(twilio.accepted(forced_open_at)) > before  # Twilio sends again


def count_lost_and_duplicated(run: Run) -> None:
    """The whole run: every message created was accepted once, by one provider, and DELIVERED."""
    run.wait_delivered()
    accepted = run.sandboxes.accepted_tokens()
    lost = sorted(set(run.created) - set(accepted))
    duplicated = {number: count for number, count in accepted.items() if count > 1}
    unknown = sorted(set(accepted) - set(run.created))
    run.figures["messages created / provider sends"] = f"{len(run.created)} / {sum(accepted.values())}"
    run.figures["lost / duplicated"] = f"{len(lost)} / {sum(c - 1 for c in duplicated.values())}"
    assert not lost
    assert not unknown
    assert not duplicated, duplicated
    # The database agrees: one SENT attempt per message, and as many as the providers accepted.
    sent = query(
        run.dsn, "SELECT outbound_message_id, count(*) AS n FROM outbound_attempt WHERE outcome = 'SENT' GROUP BY 1"
    )
    assert all(row["n"] == 1 for row in sent), [dict(row) for row in sent if row["n"] > 1]
    assert len(sent) == len(run.created) == sum(accepted.values())


def callbacks_tell_the_client(run: Run) -> None:
    """The chart's callback dispatcher pods told the client of every message: SENT, then DELIVERED
    (or READ), each POST signed with the secret the registration returned (checked with the
    documented recipe)."""
    expected = set(run.created.values())

    def told() -> bool:
        events = run.callbacks.events_by_message()
        return all("SENT" in events.get(m, ()) and events.get(m, set()) & {"DELIVERED", "READ"} for m in expected)

    wait_for(told, "a SENT and a DELIVERED callback for every message", 180, 1.0)
    received = run.callbacks.received()
    unsigned = [r.event_id for r in received if not signed_by(r, run.callback_secret)]
    assert not unsigned, unsigned
    strangers = set(run.callbacks.events_by_message()) - expected
    assert not strangers, strangers
    run.figures["callbacks received / redelivered"] = f"{len(received)} / {run.callbacks.redeliveries()}"


def uninstall_leaves_nothing(run: Run) -> None:
    """9. helm uninstall (its pre-delete hook runs on the node) leaves nothing of the release."""
    started = time.monotonic()
    helm(run.plane, "uninstall", run.release, "-n", run.namespace, "--wait", "--timeout", "5m", timeout=360)
    run.figures["helm uninstall --wait"] = f"{time.monotonic() - started:.1f} s"
    left = _leftovers(run)
    assert not left, left


async def _api_key(dsn: str) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        return (await create_key(connection, ORG, "e2e")).token
    finally:
        await connection.close()


def _pod_start_times(run: Run) -> str:
    """Each pod's creation to its Ready condition, as the API server recorded them."""
    seconds = []
    for pod in run.pods("app.kubernetes.io/name"):
        ready = [c for c in pod["status"].get("conditions") or [] if c["type"] == "Ready" and c["status"] == "True"]
        if ready:
            created = parse_time(pod["metadata"]["creationTimestamp"])
            seconds.append((parse_time(ready[0]["lastTransitionTime"]) - created).total_seconds())
    median = sorted(seconds)[len(seconds) // 2]
    return f"{len(seconds)} pods, {min(seconds):.0f} to {max(seconds):.0f} s (median {median:.0f} s)"


def _config_hash(run: Run, provider: str) -> str:
    template = run.get("deployment", f"{provider}-sender")["spec"]["template"]
    return str(template["metadata"]["annotations"][WORKER_CONFIG_HASH])


def _rolled(run: Run, provider: str, old_hash: str) -> bool:
    """The worker Deployment has a new config hash and every pod it runs is of that template, available."""
    if _config_hash(run, provider) == old_hash:
        return False
    deployment = run.get("deployment", f"{provider}-sender")
    status = deployment.get("status", {})
    wanted = int(deployment["spec"].get("replicas") or 1)
    return bool(
        status.get("observedGeneration") == deployment["metadata"]["generation"]
        and status.get("updatedReplicas") == wanted
        and status.get("availableReplicas") == wanted
        and int(status.get("replicas") or 0) == wanted
    )


def _quota_held(run: Run, numbers: list[int]) -> list[int]:
    rows = query(
        run.dsn,
        "SELECT id FROM outbound_message WHERE id = ANY($1::bigint[]) AND status = 'QUEUED'"
        " AND error_code = 'QUOTA_EXCEEDED'",
        [run.created[n] for n in numbers],
    )
    return [row["id"] for row in rows]


def _leftovers(run: Run) -> dict[str, list[str]]:
    """Objects of the release, pods, worker objects and control rows still there after uninstall."""
    plane, namespace = run.plane, run.namespace
    found: dict[str, list[str]] = {}

    def names(*args: str) -> list[str]:
        items = plane.kubectl_json("get", *args)["items"]
        return [f"{item['kind']}/{item['metadata']['name']}" for item in items]

    kinds = (
        "pods,deployments,replicasets,statefulsets,services,endpointslices,jobs,poddisruptionbudgets,configmaps,"
        "serviceaccounts,roles,rolebindings,channelproviders,quotapolicies,kopfpeerings,"
        "servicemonitors,podmonitors,prometheusrules"
    )

    def namespaced() -> list[str]:
        expected = {"ConfigMap/kube-root-ca.crt", "ServiceAccount/default"}
        return [name for name in names(kinds, "-n", namespace) if name not in expected]

    # Deleted objects go through the garbage collector and the kubelet: wait for them, then report.
    try:
        wait_for(lambda: not namespaced(), "the namespace emptied of the release's objects", 180, 1.0)
    except AssertionError:
        found["namespace"] = namespaced()
    cluster = names(
        "clusterroles,clusterrolebindings,clusterkopfpeerings", "-l", f"app.kubernetes.io/instance={run.release}"
    )
    if cluster:
        found["cluster"] = cluster
    secrets = set(names("secrets", "-n", namespace))
    ours = {f"Secret/{name}" for name in ("outbound-database", "outbound-redis", "outbound-webhooks")}
    ours |= {f"Secret/{provider}-credentials" for provider in ("twilio", "vonage", "sendgrid", "whatsapp")}
    if secrets - ours:  # helm's release records included; the user's own Secrets stay theirs
        found["secrets"] = sorted(secrets - ours)
    rows = query(run.dsn, "SELECT provider FROM provider_control UNION ALL SELECT org_id FROM whatsapp_quota_policy")
    if rows:
        found["database control rows"] = [row[0] for row in rows]
    return found
