"""Schemathesis against our own OpenAPI document: >= 10,000 generated requests (valid and invalid) to a
real `outbound api` process on loopback. No response is a 5xx, every response matches the document,
and the only rows in the database are those that 2xx answers returned (rejected requests store nothing).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import Iterator
from typing import Any

import asyncpg
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from outbound_sender.api.app import openapi_document
from outbound_sender.api.auth import create_key
from outbound_sender.embedded import free_port
from tests.processes import outbound, stop, wait_http

# Examples per operation and mode (positive, negative): 10,500 at most; hypothesis stops an operation
# early only when it has tried every distinct input (the parameterless probes).
BUDGET = {
    ("POST", "/v1/messages"): (2500, 1500),
    ("POST", "/v1/messages/batch"): (1000, 800),
    ("GET", "/v1/messages"): (1400, 900),
    ("GET", "/v1/messages/{message_id}"): (700, 500),
    ("POST", "/v1/messages/{message_id}/cancel"): (600, 500),
    ("POST", "/v1/callbacks"): (200, 150),  # most generated hosts do not resolve: 422
    ("GET", "/v1/callbacks"): (50, 0),
    ("DELETE", "/v1/callbacks/{endpoint_id}"): (100, 80),
    ("POST", "/v1/callbacks/{endpoint_id}/rotate"): (150, 100),
    ("GET", "/healthz"): (50, 0),  # no parameters: nothing to vary or make invalid
    ("GET", "/readyz"): (50, 0),
}
# Valid recipients are a sliver of what the schema allows (+15551230000 is E.164-shaped but not a real
# number), so half the positive cases are fitted to their channel's rules (_fit_channel).
RECIPIENTS = {"SMS": "+14155552671", "WHATSAPP": "+33612345678", "EMAIL": "ada@example.com"}
# Every other built-in check runs. positive_data_acceptance does not: a schema-valid request can still be
# a 422 by design, because what JSON Schema cannot say (is +15551230000 a real number? does this
# channel take a subject?) is checked by the channel rules and named in the 422 body.
CREATES = {("POST", "/v1/messages"), ("POST", "/v1/messages/batch")}


@pytest.fixture
def api_process(db_dsn: str) -> Iterator[tuple[str, str]]:
    token = asyncio.run(_key(db_dsn))
    port = free_port()
    env = {
        "DATABASE_URL": db_dsn,
        "OUTBOUND_HTTP_HOST": "127.0.0.1",
        "OUTBOUND_HTTP_PORT": str(port),
        "OUTBOUND_METRICS_PORT": str(free_port()),
        "OUTBOUND_API_RATE_LIMIT_PER_SECOND": "0",
        "OUTBOUND_API_AUTH_FAILURES_MAX": "0",  # invalid keys stay 401 (throttling: test_auth_throttle.py)
        "OUTBOUND_API_ACCESS_LOG": "false",
        "OUTBOUND_LOG_LEVEL": "WARNING",
        "OUTBOUND_PROVIDER_KIND": "sandbox",  # webhooks verified with the sandboxes' test secrets
    }
    process = outbound("api", env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz")
        yield url, token
    finally:
        assert stop(process) == 0


async def _key(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return (await create_key(conn, "acme", "schemathesis")).token
    finally:
        await conn.close()


async def _stored_ids(dsn: str) -> set[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {row["id"] for row in await conn.fetch("SELECT id FROM outbound_message")}
    finally:
        await conn.close()


def _created_ids(method: str, path: str, response: requests.Response) -> set[int]:
    if (method, path) not in CREATES or response.status_code not in {200, 201}:
        return set()
    body: dict[str, Any] = response.json()
    return {m["id"] for m in body["messages"]} if "messages" in body else {body["id"]}


def _fit_channel(body: Any) -> None:
    """Keep the generated values but make each message follow its channel's rules (real recipient,
    the content fields that channel takes), so that these cases reach the insert path."""
    for message in body.get("messages", [body]) if isinstance(body, dict) else []:
        if isinstance(message, dict) and message.get("channel") in RECIPIENTS:
            message["to"] = RECIPIENTS[message["channel"]]
            FITS[message["channel"]](message)


def _fit_sms(m: dict[str, Any]) -> None:
    for name in ("subject", "template_code", "template_language", "template_params"):
        m.pop(name, None)
    m["body"] = (m.get("body") or "hi")[:1600]


def _fit_email(m: dict[str, Any]) -> None:
    m.pop("template_language", None)
    if m.get("template_code"):
        m.pop("body", None)
        return
    m.pop("template_code", None)
    m.pop("template_params", None)
    m["subject"], m["body"] = m.get("subject") or "s", m.get("body") or "b"


def _fit_whatsapp(m: dict[str, Any]) -> None:
    m.pop("subject", None)
    if m.get("template_code"):
        m.pop("body", None)
        m["template_code"] = "appointment_reminder"
        m["template_language"] = m.get("template_language") or "en"
        return
    for name in ("template_code", "template_language", "template_params"):
        m.pop(name, None)
    m["body"] = (m.get("body") or "hi")[:4096]


FITS = {"SMS": _fit_sms, "EMAIL": _fit_email, "WHATSAPP": _fit_whatsapp}


def _auth(case: Any, token: str) -> dict[str, str]:
    """Our key, unless the case's point is an invalid or missing header (then it goes as generated)."""
    components = case.meta.components if case.meta else {}
    header = components.get(ParameterLocation.HEADER)
    if header is not None and header.mode.is_negative:
        return {}
    return {"Authorization": f"Bearer {token}"}


def _run(operation: Any, mode: GenerationMode, *, count: int, url: str, token: str, seen: dict[str, Any]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode), fit=st.booleans())
    @hypothesis.settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any, fit: bool) -> None:
        if fit and mode is GenerationMode.POSITIVE:
            _fit_channel(case.body)
        response = case.call(base_url=url, session=session, headers=_auth(case, token))
        seen["statuses"][response.status_code] += 1
        seen["created"] |= _created_ids(operation.method.upper(), operation.path, response)
        case.validate_response(response, excluded_checks=[positive_data_acceptance])

    with requests.Session() as session:
        run()


@pytest.mark.timeout(900)
def test_ten_thousand_generated_requests(api_process: tuple[str, str], db_dsn: str) -> None:
    url, token = api_process
    schema = schemathesis.openapi.from_dict(openapi_document())
    # A body over the size limit is rejected with 413 (documented on the create endpoints).
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    seen: dict[str, Any] = {"statuses": Counter(), "created": set()}
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # our own document always loads
        positive, negative = BUDGET[(operation.method.upper(), operation.path)]
        for mode, count in ((GenerationMode.POSITIVE, positive), (GenerationMode.NEGATIVE, negative)):
            if count:
                _run(operation, mode, count=count, url=url, token=token, seen=seen)
    statuses: Counter[int] = seen["statuses"]
    print(f"schemathesis: {sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}")
    assert not [code for code in statuses if code >= 500]
    assert sum(statuses.values()) >= 10_000
    assert statuses[201] >= 250, "the generated requests hardly reached the insert path"
    assert asyncio.run(_stored_ids(db_dsn)) == seen["created"]
