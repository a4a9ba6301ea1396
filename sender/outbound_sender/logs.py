"""One logging setup for every process: logfmt by default (the runbook greps it), JSON on request.

Lines look like:
    ts=2026-11-28T12:00:00.123Z level=INFO logger=OutboundJobWorker
        msg="OutboundJobWorker Processing 10 pending outbound messages"
Context fields are passed with `extra={"fields": {...}}` and rendered as key=value in that order, so
the runbook's patterns (`messageId=123`, `correlationId=abc`, `errorCode=X`) match. Phone numbers and
e-mail addresses are masked in every message, field, exception and stack text, by both formatters;
numbers passed as int/float fields (ids, counts, durations) are left alone.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import threading
from types import TracebackType
from typing import Any

# E-mail: local part and domain of common addresses. The first character of the local part and the
# domain stay (debugging needs to tell gmail from a customer's domain); the rest of the local part goes.
_EMAIL = re.compile(
    r"([A-Za-z0-9_%+!#$&^{|}~-])[A-Za-z0-9._%+!#$&^{|}~-]*@([A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)"
    r"((?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+)"
)
# International numbers: '+' and 7 or more digits, possibly grouped ("+1 (555) 123-4567", "+44.20.7946.0958");
# longer runs are masked whole, so digits glued to a number cannot reveal it.
_INTERNATIONAL = re.compile(r"\+\(?\d(?:[ .()-]{0,2}\d){6,}")
# Bare E.164 digits (WhatsApp wa_id, "to" without '+'): 10-15 digits that are not part of a word,
# a decimal number or a longer digit run.
_BARE = re.compile(r"(?<![\w.+])\d{10,15}(?!\w|\.\d)")
# National formats: (555) 123-4567, 555-123-4567, 555.123.4567, 555 123 4567.
_NATIONAL = re.compile(r"(?<![\w.])(?:\(\d{3}\)\s?|\d{3}[ .-])\d{3}[ .-]\d{4}(?!\w|\.\d)")
_PHONES = (_INTERNATIONAL, _BARE, _NATIONAL)
# Every phone pattern above needs 7 digits with at most 2-3 other characters between neighbours:
# text without such a run cannot hold a number, and skips the three substitutions (the common case).
_SEVEN_DIGITS = re.compile(r"\d(?:\D{0,3}\d){6}")
_LOGFMT_BARE = re.compile(r"^[A-Za-z0-9_.:/@+*-]+$")


def mask_phone(match: re.Match[str]) -> str:
    """Keep the last 4 digits (and a leading '+'): enough to tell numbers apart in an incident."""
    digits = re.sub(r"\D", "", match.group(0))
    prefix = "+" if match.group(0).startswith("+") else ""
    return prefix + "*" * (len(digits) - 4) + digits[-4:]


def mask(text: str) -> str:
    """Mask e-mail addresses (keep first character and domain) and phone numbers (keep last 4).

    Idempotent: masking masked text changes nothing.
    """
    if "@" in text:
        text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}{m.group(3)}", text)
    if _SEVEN_DIGITS.search(text) is None:
        return text
    for pattern in _PHONES:
        text = pattern.sub(mask_phone, text)
    return text


def mask_value(value: Any) -> Any:
    """Numbers stay numbers (ids, counts, durations); everything else is masked text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    return mask(value if isinstance(value, str) else str(value))


def _logfmt_value(value: Any) -> str:
    """Render one already-masked value: bare when safe, else quoted with escapes."""
    text = "null" if value is None else str(value)
    if text and _LOGFMT_BARE.match(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + escaped + '"'


def _timestamp(record: logging.LogRecord) -> str:
    moment = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


_HEADER = ("ts", "level", "logger")


class _MaskingFormatter(logging.Formatter):
    def _document(self, record: logging.LogRecord) -> dict[str, Any]:
        """Every key of the line: our own header, then masked message, fields, exception, stack."""
        doc: dict[str, Any] = {"msg": record.getMessage()}
        for key, value in _fields(record).items():
            if key not in _HEADER:
                doc.setdefault(str(key), value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        header = {"ts": _timestamp(record), "level": record.levelname, "logger": record.name}
        return header | {key: mask_value(value) for key, value in doc.items()}


class LogfmtFormatter(_MaskingFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in self._document(record).items())


class JsonFormatter(_MaskingFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self._document(record), default=str)


# Library loggers that install their own handlers (uvicorn's dictConfig) are routed through ours.
_ADOPTED = ("uvicorn", "uvicorn.error", "uvicorn.access", "kopf")


def formatter(fmt: str = "logfmt") -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else LogfmtFormatter()


def setup_logging(fmt: str = "logfmt", level: str = "INFO") -> None:
    """Configure the root logger once per process; every line goes through a masking formatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in _ADOPTED:
        adopted = logging.getLogger(name)
        adopted.handlers[:] = []
        adopted.propagate = True
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_thread


def _log_uncaught(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
    """Uncaught exceptions become a masked log line instead of a raw traceback on stderr."""
    logging.getLogger("uncaught").critical("uncaught exception", exc_info=(kind, error, traceback))


def _log_uncaught_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    name = args.thread.name if args.thread else "?"
    logging.getLogger("uncaught").critical(
        f"uncaught exception in thread {name}", exc_info=(args.exc_type, args.exc_value, args.exc_traceback)
    )


def message_fields(message_id: int, correlation_id: str | None, **more: Any) -> dict[str, Any]:
    """Context keys of a message's log lines; both correlation spellings the runbook greps for."""
    fields: dict[str, Any] = {"messageId": message_id}
    if correlation_id:
        fields["correlationId"] = correlation_id
        fields["correlation_id"] = correlation_id
    fields.update(more)
    return fields
