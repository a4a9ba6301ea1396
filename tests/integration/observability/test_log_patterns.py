"""The runbook's log searches find what they promise, run as the runbook writes them.

A real worker sends through the sandbox provider (a success, a permanent failure, a retried failure
that ends FAILED) with the production log setup (logfmt on the root logger). Every `kubectl logs ... |
grep ...` pipeline of shared/runbook.md is then run by bash over the captured lines, with `cat` in
place of kubectl and the runbook's placeholder ids replaced by this run's ids.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from outbound_sender.domain import Channel, NewMessage
from outbound_sender.logs import formatter
from tests.integration.observability import harness
from tests.runbook import runbook_text

PLACEHOLDERS = ("12345", "abc-123-def", "XXXX")


def runbook_log_pipelines(text: str) -> list[str]:
    """The grep part (after kubectl) of every `kubectl logs ... | grep ...` line of the runbook."""
    pipelines = []
    for line in text.splitlines():
        command = line.strip()
        if command.startswith("kubectl logs") and "|" in command:
            pipelines.append(command.split("|", 1)[1].strip())
    return pipelines


class Lines(logging.Handler):
    def __init__(self, fmt: str) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(formatter(fmt))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured() -> Iterator[dict[str, Lines]]:
    """Production-format lines of everything logged at INFO and above, in logfmt and in JSON."""
    root = logging.getLogger()
    handlers = {"logfmt": Lines("logfmt"), "json": Lines("json")}
    level = root.level
    root.setLevel(logging.INFO)
    for handler in handlers.values():
        root.addHandler(handler)
    yield handlers
    for handler in handlers.values():
        root.removeHandler(handler)
    root.setLevel(level)


def run_pipeline(pipeline: str, log_file: Path) -> list[str]:
    result = subprocess.run(
        ["bash", "-c", f"cat {shlex.quote(str(log_file))} | {pipeline}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.stdout.splitlines()


def traffic() -> list[NewMessage]:
    return [
        NewMessage("acme", Channel.SMS, harness.OK_SMS, body="ok", correlation_id="corr-ok-1"),
        NewMessage("acme", Channel.SMS, harness.PERMANENT_SMS, body="bad", correlation_id="corr-perm-1"),
        NewMessage(
            "acme",
            Channel.SMS,
            harness.TEMPORARY_SMS,
            body="flaky",
            max_attempts=2,
            correlation_id="corr-tmp-1",
        ),
    ]


def provider_error_line() -> None:
    """What the provider implementations log on an API error (logger provider.<Name>, ERROR)."""
    logging.getLogger("provider.Twilio").error(
        f"Twilio API error 21211 for {harness.OK_SMS}",
        extra={"fields": {"messageId": 1, "errorCode": "INVALID_PHONE_NUMBER", "providerCode": "21211"}},
    )


async def test_runbook_log_searches_match_the_worker_lines(
    db: asyncpg.Connection, db_dsn: str, captured: dict[str, Lines], tmp_path: Path
) -> None:
    async with harness.sandbox() as url, harness.sender_pod(db_dsn, url):
        ok, permanent, temporary = await harness.send(db, traffic())
        await harness.wait_all_final(db, [ok, permanent, temporary])
    provider_error_line()
    log_file = tmp_path / "backend.log"
    log_file.write_text("\n".join(captured["logfmt"].lines) + "\n")

    pipelines = runbook_log_pipelines(runbook_text())
    assert len(pipelines) >= 8
    substitutions = {"12345": str(ok), "abc-123-def": "corr-ok-1", "XXXX": "corr-perm-1"}
    for pipeline in pipelines:
        command = pipeline
        for placeholder, value in substitutions.items():
            command = command.replace(placeholder, value)
        assert run_pipeline(command, log_file), f"no log line matches the runbook's: {pipeline}"

    failures = run_pipeline('grep "handleFailure" | grep "errorCode"', log_file)
    assert any(f"messageId={permanent} " in line and "errorCode=INVALID_PHONE_NUMBER" in line for line in failures)
    retried = [line for line in failures if f"messageId={temporary} " in line]
    assert [re.search(r"level=(\w+)", line).group(1) for line in retried] == ["WARNING", "ERROR"]  # type: ignore[union-attr]
    sent = run_pipeline(f'grep "messageId={ok} "', log_file)
    assert any("correlationId=corr-ok-1" in line and "provider=sandbox" in line for line in sent)
    assert run_pipeline('grep "correlation_id=corr-tmp-1" | grep "attempt=2/2"', log_file)


async def test_recipients_never_appear_and_json_lines_parse(
    db: asyncpg.Connection, db_dsn: str, captured: dict[str, Lines]
) -> None:
    async with harness.sandbox() as url, harness.sender_pod(db_dsn, url):
        ids = await harness.send(db, traffic())
        await harness.wait_all_final(db, ids)
    provider_error_line()
    recipients = (harness.OK_SMS, harness.PERMANENT_SMS, harness.TEMPORARY_SMS)
    for fmt, handler in captured.items():
        assert handler.lines, fmt
        for line in handler.lines:
            assert not [r for r in recipients if r in line or r[1:] in line], line
    docs = [json.loads(line) for line in captured["json"].lines]
    assert any(doc.get("errorCode") == "INVALID_PHONE_NUMBER" and doc["level"] == "ERROR" for doc in docs)
    assert any(doc["msg"].startswith("OutboundJobWorker Processing") for doc in docs)


def test_the_pipelines_are_the_runbooks() -> None:
    pipelines = runbook_log_pipelines(runbook_text())
    assert 'grep "OutboundJobWorker" | grep "Processing"' in pipelines
    assert 'grep "handleFailure" | grep "errorCode"' in pipelines
    assert 'grep -E "(Twilio|SendGrid|WhatsApp)" | grep "ERROR"' in pipelines
    assert all(any(p in pipeline for p in PLACEHOLDERS) for pipeline in pipelines if "Id=" in pipeline)
