"""The logfmt and JSON formatters: one line per record, runbook keys, recipients masked everywhere."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator

import pytest

from outbound_sender import cli_support
from outbound_sender.config import AllSettings
from outbound_sender.logs import JsonFormatter, LogfmtFormatter, message_fields, setup_logging

PHONE = "+15557654321"
EMAIL = "carol.jones@example.org"


def record(msg: str, *, level: int = logging.INFO, name: str = "OutboundJobWorker", **kw: object) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, msg, None, None)
    for key, value in kw.items():
        setattr(rec, key, value)
    return rec


def failing_record() -> logging.LogRecord:
    try:
        raise ValueError(f"provider rejected {PHONE} and {EMAIL}")
    except ValueError:
        rec = logging.LogRecord("provider.Twilio", logging.ERROR, __file__, 1, "send failed", None, sys.exc_info())
    return rec


def test_logfmt_renders_runbook_keys_in_order() -> None:
    fields = message_fields(42, "abc-123-def", errorCode="INVALID_PHONE_NUMBER", retryInMs=None)
    line = LogfmtFormatter().format(record("handleFailure: rejected", fields=fields))
    assert line.startswith("ts=")
    assert ' level=INFO logger=OutboundJobWorker msg="handleFailure: rejected" messageId=42 ' in line
    assert "correlationId=abc-123-def correlation_id=abc-123-def errorCode=INVALID_PHONE_NUMBER" in line
    assert line.endswith("retryInMs=null")


def test_logfmt_is_one_line_with_escaped_quotes_and_newlines() -> None:
    line = LogfmtFormatter().format(record('two\nlines "quoted"'))
    assert "\n" not in line
    assert 'msg="two\\nlines \\"quoted\\""' in line


def test_recipients_are_masked_in_message_fields_and_exception() -> None:
    fields = {"to": PHONE, "email": EMAIL, "messageId": 12345678901}
    for formatter in (LogfmtFormatter(), JsonFormatter()):
        for rec in (record(f"sending to {PHONE} / {EMAIL}", fields=fields), failing_record()):
            line = formatter.format(rec)
            assert PHONE not in line
            assert EMAIL not in line
            assert "4321" in line or "c***@example.org" in line


def test_ids_passed_as_numbers_stay_greppable() -> None:
    line = LogfmtFormatter().format(record("sent", fields={"messageId": 12345678901}))
    assert "messageId=12345678901" in line


def test_exception_is_rendered_on_the_same_line() -> None:
    line = LogfmtFormatter().format(failing_record())
    assert "\n" not in line
    assert "level=ERROR logger=provider.Twilio" in line
    assert "ValueError: provider rejected +*******4321 and c***@example.org" in line


def test_stack_info_is_masked() -> None:
    rec = record("look", stack_info=f'File "x.py", line 1, in send_to_{EMAIL}')
    doc = json.loads(JsonFormatter().format(rec))
    assert EMAIL not in doc["stack"]


def test_json_keeps_types_and_masks_strings() -> None:
    rec = record("sent", fields={"messageId": 7, "durationMs": 12.5, "ok": True, "to": PHONE})
    doc = json.loads(JsonFormatter().format(rec))
    assert doc["messageId"] == 7
    assert doc["durationMs"] == 12.5
    assert doc["ok"] is True
    assert doc["to"] == "+*******4321"
    assert {"ts", "level", "logger", "msg"} <= doc.keys()


def test_fields_cannot_overwrite_the_line_header() -> None:
    line = LogfmtFormatter().format(record("real", fields={"level": "FAKE", "msg": "fake"}))
    assert "level=INFO" in line
    assert "msg=real" in line


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, sys.excepthook)
    saved_thread_hook = threading.excepthook
    uvicorn = logging.getLogger("uvicorn.access")
    saved_uvicorn = (uvicorn.handlers[:], uvicorn.propagate)
    yield
    root.handlers[:], root.level, sys.excepthook = saved
    threading.excepthook = saved_thread_hook
    uvicorn.handlers[:], uvicorn.propagate = saved_uvicorn


@pytest.mark.usefixtures("restore_logging")
def test_setup_logging_routes_library_loggers_through_the_masking_handler() -> None:
    access = logging.getLogger("uvicorn.access")
    access.addHandler(logging.StreamHandler())
    access.propagate = False
    setup_logging("json", "INFO")
    root = logging.getLogger()
    assert len(root.handlers) == 1
    assert isinstance(root.handlers[0].formatter, JsonFormatter)
    assert access.handlers == []
    assert access.propagate


@pytest.mark.usefixtures("restore_logging")
def test_uncaught_exceptions_are_logged_masked(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("logfmt", "INFO")
    try:
        raise RuntimeError(f"boom for {EMAIL}")
    except RuntimeError as error:
        sys.excepthook(RuntimeError, error, error.__traceback__)
    err = capsys.readouterr().err
    assert "logger=uncaught" in err
    assert "RuntimeError: boom for c***@example.org" in err
    assert EMAIL not in err


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["json", "logfmt"])
def test_a_commands_lines_take_the_format_and_level_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """An `outbound` command (cli_support.execute, as every command runs) with OUTBOUND_LOG_FORMAT and
    OUTBOUND_LOG_LEVEL set: its lines are in that format, and those under that level are not written."""
    monkeypatch.setenv("OUTBOUND_LOG_FORMAT", fmt)
    monkeypatch.setenv("OUTBOUND_LOG_LEVEL", "WARNING")
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    log = logging.getLogger("OutboundJobWorker")

    async def handler(_settings: AllSettings) -> int:
        log.info("not at this level")
        log.warning("handleFailure: retrying", extra={"fields": {"messageId": 3}})
        return 0

    cli_support.execute("status", handler)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    if fmt == "json":
        doc = json.loads(lines[0])
        assert (doc["msg"], doc["messageId"], doc["level"]) == ("handleFailure: retrying", 3, "WARNING")
    else:
        assert lines[0].startswith("ts=")
        assert "level=WARNING" in lines[0]
        assert "messageId=3" in lines[0]
