"""One logging setup for every process: logfmt by default (the runbook greps it), JSON on request.

Lines look like:
    ts=2026-11-28T12:00:00.123Z level=INFO logger=OutboundJobWorker
        msg="OutboundJobWorker Processing 10 pending outbound messages"
Context fields are passed with `extra={"fields": {...}}` and rendered as key=value in that order, so
the runbook's patterns (`messageId=123`, `correlationId=abc`, `errorCode=X`) match. Phone numbers and
e-mail addresses are masked in every message, field and exception text.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from typing import Any

_PHONE = re.compile(r"(?<![\w.])\+?\d[\d\s().-]{6,}\d(?![\w.])")
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+)((?:\.[A-Za-z0-9-]+)+)")
_BARE = re.compile(r"^[A-Za-z0-9_.:/@+-]+$")


def mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if len(digits) < 7:
        return match.group(0)
    return ("+" if match.group(0).startswith("+") else "") + "*" * (len(digits) - 4) + digits[-4:]


def mask(text: str) -> str:
    """Mask e-mail addresses (keep first letter and domain) and phone numbers (keep last 4 digits)."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}{m.group(3)}", text)
    return _PHONE.sub(mask_phone, text)


def _logfmt_value(value: Any) -> str:
    text = mask(str(value))
    if text and _BARE.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _timestamp(record: logging.LogRecord) -> str:
    moment = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        parts.update(_fields(record))
        if record.exc_info:
            parts["exc"] = self.formatException(record.exc_info)
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in parts.items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": mask(record.getMessage()),
        }
        doc.update({key: mask(str(value)) for key, value in _fields(record).items()})
        if record.exc_info:
            doc["exc"] = mask(self.formatException(record.exc_info))
        return json.dumps(doc)


def setup_logging(fmt: str = "logfmt", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def message_fields(message_id: int, correlation_id: str | None, **more: Any) -> dict[str, Any]:
    """Context keys of a message's log lines; both correlation spellings the runbook greps for."""
    fields: dict[str, Any] = {"messageId": message_id}
    if correlation_id:
        fields["correlationId"] = correlation_id
        fields["correlation_id"] = correlation_id
    fields.update(more)
    return fields
