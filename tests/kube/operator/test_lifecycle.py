"""Create, update, delete and resume of a ChannelProvider against the real API server and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from outbound_operator.reconcile.admission import repository
from outbound_operator.settings import OperatorSettings
from tests.kube.manifests import channel_provider, quota_policy
from tests.kube.plane import ControlPlane

from .support import OperatorProcess, condition, events, eventually, get, reasons

pytestmark = [pytest.mark.kube]
DEFAULT_REPOSITORY = repository(str(OperatorSettings.model_fields["worker_image"].default))

TWILIO: dict[str, Any] = {
    "channel": "SMS",
    "provider": "twilio",
    "priority": 10,
    "credentialsSecretRef": {"name": "twilio-credentials", "keys": {"authToken": "token"}},
    "twilio": {"messagingServiceSid": "MG0123456789abcdef0123456789abcdef"},
    "endpoint": "https://twilio-sandbox.test:8025",
    "scaling": {"batchSize": {"min": 5, "max": 200, "initial": 20}, "replicas": {"min": 2, "max": 6}},
}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


async def _control(db: asyncpg.Connection, provider: str) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT * FROM provider_control WHERE provider = $1", provider)


async def test_create_makes_deployment_configmap_and_control_row(
    plane: ControlPlane, namespace: str, operator: OperatorProcess, db: asyncpg.Connection
) -> None:
    plane.apply(channel_provider("twilio", TWILIO), namespace=namespace)
    deployment = await eventually(lambda: get(plane, namespace, "deployment", "twilio-sender"))
    config = get(plane, namespace, "configmap", "twilio-sender-config")
    assert config is not None
    owner = get(plane, namespace, "channelprovider", "twilio")
    assert owner is not None
    for obj in (deployment, config):
        [ref] = obj["metadata"]["ownerReferences"]
        expected = ("ChannelProvider", "twilio", owner["metadata"]["uid"], True)
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == expected
    assert config["data"]["OUTBOUND_PROVIDER_NAME"] == "twilio"
    assert config["data"]["OUTBOUND_WORKER_CHANNELS"] == "SMS"
    assert config["data"]["TWILIO_MESSAGING_SERVICE_SID"] == "MG0123456789abcdef0123456789abcdef"
    assert config["data"]["TWILIO_BASE_URL"] == "https://twilio-sandbox.test:8025"
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/actuator/prometheus"
    assert pod["spec"]["terminationGracePeriodSeconds"] > 25  # longer than connect + read timeout
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["volumes"][0]["secret"]["secretName"] == "twilio-credentials"
    container = _container(deployment)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in container["env"]}
    assert env["TWILIO_AUTH_TOKEN_FILE"]["value"].endswith("/token")
    assert env["TWILIO_ACCOUNT_SID_FILE"]["value"].endswith("/accountSid")
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "outbound-database", "key": "url"}
    row = await eventually(lambda: _control(db, "twilio"))
    assert (row["channel"], row["kind"], row["enabled"], row["priority"]) == ("SMS", "twilio", True, 10)
    assert row["circuit_state"] == "CLOSED"
    # An empty queue: the batch size goes to the spec's minimum (initial 20 until the first measurement).
    assert (await eventually(lambda: _control(db, "twilio")))["batch_size"] in {20, 5}
    applied = await eventually(lambda: condition(get(plane, namespace, "channelprovider", "twilio"), "Reconciled"))
    assert applied["status"] == "True"
    plane.kubectl("wait", "--for=condition=Reconciled", "channelprovider/twilio", "-n", namespace, "--timeout=10s")
    # No node runs the pod here: applied, but not Ready, and Ready says how many pods are missing.
    ready = condition(get(plane, namespace, "channelprovider", "twilio"), "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "WorkersUnavailable",
        "0 of 2 worker pods available",
    ), ready
    assert "secrets" not in operator.log()  # never asked for a Secret (and RBAC would refuse)


async def _ready(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(plane, namespace, "channelprovider", name)
        ok = condition(obj, "Reconciled").get("status") == "True"
        return obj if ok and obj and obj["status"].get("observedGeneration") == obj["metadata"]["generation"] else None

    found: dict[str, Any] = await eventually(check)
    return found


async def test_update_converges_deployment_and_control_row(
    plane: ControlPlane, namespace: str, operator: OperatorProcess, db: asyncpg.Connection
) -> None:
    plane.apply(channel_provider("twilio", TWILIO), namespace=namespace)
    await _ready(plane, namespace, "twilio")
    patch = '{"spec":{"priority":20,"image":":2","twilio":{"from":"+15005550006","messagingServiceSid":null}}}'
    plane.kubectl("patch", "channelprovider", "twilio", "-n", namespace, "--type", "merge", "-p", patch)

    def converged() -> bool:
        deployment = get(plane, namespace, "deployment", "twilio-sender")
        config = get(plane, namespace, "configmap", "twilio-sender-config")
        assert deployment is not None
        assert config is not None
        return (
            _container(deployment)["image"] == DEFAULT_REPOSITORY + ":2"  # a tag of the operator's image
            and config["data"].get("TWILIO_FROM_NUMBER") == "+15005550006"
            and "TWILIO_MESSAGING_SERVICE_SID" not in config["data"]
        )

    await eventually(converged)
    row = await eventually(lambda: _control(db, "twilio"))
    assert row["priority"] == 20
    obj = await _ready(plane, namespace, "twilio")
    assert row["observed_generation"] == obj["metadata"]["generation"]


async def test_hand_edits_are_reverted_and_reported(
    plane: ControlPlane, namespace: str, operator: OperatorProcess, db: asyncpg.Connection
) -> None:
    plane.apply(channel_provider("twilio", TWILIO), namespace=namespace)
    await _ready(plane, namespace, "twilio")
    await eventually(lambda: _control(db, "twilio"))
    await db.execute("UPDATE provider_control SET enabled = false, priority = 999 WHERE provider = 'twilio'")
    plane.kubectl("set", "image", "deployment/twilio-sender", "worker=evil.test/x:1", "-n", namespace)

    async def restored() -> bool:
        row = await _control(db, "twilio")
        deployment = get(plane, namespace, "deployment", "twilio-sender")
        assert row is not None
        assert deployment is not None
        return bool(row["enabled"]) and row["priority"] == 10 and _container(deployment)["image"] != "evil.test/x:1"

    await eventually(restored)
    found = await eventually(lambda: {"ControlRowDrift", "DeploymentDrift"} <= set(reasons(plane, namespace, "twilio")))
    assert found
    assert "outbound_operator_drift_corrections_total" in operator.metrics()


async def test_delete_removes_what_it_owns(
    plane: ControlPlane, namespace: str, operator: OperatorProcess, db: asyncpg.Connection
) -> None:
    plane.apply(channel_provider("twilio", TWILIO), namespace=namespace)
    await _ready(plane, namespace, "twilio")
    await eventually(lambda: _control(db, "twilio"))
    plane.kubectl("delete", "channelprovider", "twilio", "-n", namespace, "--timeout=30s")
    assert await _control(db, "twilio") is None  # the finalizer ran before the object went away
    # Owned objects go by garbage collection, which learns new CRD kinds on its 30 s discovery sync:
    # right after the CRDs are installed that can take up to a minute.
    await eventually(lambda: get(plane, namespace, "deployment", "twilio-sender") is None, timeout=90)
    await eventually(lambda: get(plane, namespace, "configmap", "twilio-sender-config") is None, timeout=90)


RACES: dict[str, tuple[Callable[[], dict[str, Any]], str, str, str]] = {
    # kind: manifest, the table its reconcile reads or writes first, the row that must be gone after,
    # and a change that makes the held tick write (a hand edit it corrects: an idle tick writes nothing)
    "channelprovider": (
        lambda: channel_provider("twilio", TWILIO),
        "provider_control",
        "SELECT 1 FROM provider_control WHERE provider = 'twilio'",
        "UPDATE provider_control SET priority = 999 WHERE provider = 'twilio'",
    ),
    "quotapolicy": (  # its tick writes the policy row first, unconditionally
        lambda: quota_policy("twilio", {"orgId": "acme", "tier": "Tier1K", "dailyLimit": 1000}),
        "whatsapp_quota_policy",
        "SELECT 1 FROM whatsapp_quota_policy WHERE org_id = 'acme'",
        "SELECT 1",
    ),
}


async def _lock_waiters(db: asyncpg.Connection, table: str) -> int:
    query = """
        SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%' || $1 || '%'
    """
    return int(await db.fetchval(query, table))


def _deleting(plane: ControlPlane, namespace: str, kind: str) -> bool:
    obj = get(plane, namespace, kind, "twilio") or {}
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


async def _journal(db: asyncpg.Connection, table: str) -> None:
    """Record every row written to or deleted from ``table``, in order (this test's own database)."""
    await db.execute("CREATE TABLE test_writes (seq bigserial PRIMARY KEY, op text NOT NULL)")
    await db.execute(
        "CREATE FUNCTION test_journal() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN INSERT INTO test_writes (op) VALUES (TG_OP); RETURN NULL; END $$"
    )
    await db.execute(
        f"CREATE TRIGGER test_journal AFTER INSERT OR UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION test_journal()"
    )


@pytest.mark.parametrize("kind", sorted(RACES))
async def test_delete_during_a_timer_reconcile_is_prompt_and_nothing_comes_back(
    plane: ControlPlane, namespace: str, operator: OperatorProcess, db: asyncpg.Connection, kind: str
) -> None:
    """A timer tick in the middle of its reconcile when the object is deleted (seen under CPU load).

    The tick is held inside its reconcile by a table lock; the object is deleted meanwhile; the lock
    is kept longer than the operator waits for a tick to end at once. Then: `kubectl delete` returns
    within its 30 s (kopf's default looked again only after 60 s), and nothing writes the row after
    the cleanup handler deleted it (the unguarded tick wrote it back until kopf's next cleanup call).
    """
    manifest, table, row, edit = RACES[kind]
    plane.apply(manifest(), namespace=namespace)
    # Applied (Reconciled; a QuotaPolicy's Ready): the create handler is done, so what the lock
    # catches below is a timer tick.
    done = "Reconciled" if kind == "channelprovider" else "Ready"
    await eventually(lambda: condition(get(plane, namespace, kind, "twilio"), done).get("status") == "True")
    assert await db.fetchval(row)
    await _journal(db, table)
    checker = await asyncpg.connect(operator.dsn)
    try:
        async with db.transaction():
            await db.execute(edit)
            await db.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            await eventually(lambda: _lock_waiters(checker, table))  # the next tick is stuck in its reconcile
            deletion = asyncio.create_task(
                asyncio.to_thread(plane.kubectl, "delete", kind, "twilio", "-n", namespace, "--timeout=30s")
            )
            await eventually(lambda: _deleting(plane, namespace, kind))
            await asyncio.sleep(3)  # longer than the operator's 2 s wait for a tick to end at once
        await deletion  # raises if kubectl delete timed out
    finally:
        await checker.close()
    assert get(plane, namespace, kind, "twilio") is None
    assert await db.fetchval(row) is None
    ops = [r["op"] for r in await db.fetch("SELECT op FROM test_writes ORDER BY seq")]
    assert "DELETE" in ops
    assert ops[ops.index("DELETE") + 1 :] == []  # the finishing tick wrote nothing back, not even for a moment


async def test_restart_resumes_without_duplicate_work(
    plane: ControlPlane, namespace: str, operator: OperatorProcess, db: asyncpg.Connection
) -> None:
    plane.apply(channel_provider("twilio", {**TWILIO, "circuitBreaker": {"mode": "ForceOpen"}}), namespace=namespace)
    await _ready(plane, namespace, "twilio")
    await eventually(lambda: "ForcedOpen" in reasons(plane, namespace, "twilio"))
    await asyncio.sleep(2)  # a few timer ticks: everything settled
    before = await _snapshot(plane, namespace, db)
    operator.restart()
    await asyncio.sleep(3)  # resume handler plus several timer ticks
    after = await _snapshot(plane, namespace, db)
    assert after == before
    assert "Handler 'resume' succeeded" in operator.log()


async def _snapshot(plane: ControlPlane, namespace: str, db: asyncpg.Connection) -> dict[str, Any]:
    row = await _control(db, "twilio")
    deployment = get(plane, namespace, "deployment", "twilio-sender")
    config = get(plane, namespace, "configmap", "twilio-sender-config")
    assert row is not None
    assert deployment is not None
    assert config is not None
    return {
        "row": dict(row),
        "deployment": deployment["metadata"]["generation"],
        "config": config["metadata"]["resourceVersion"],
        "events": sorted((e["reason"], e.get("count", 1)) for e in events(plane, namespace, "twilio")),
    }
