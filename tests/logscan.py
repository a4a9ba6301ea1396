"""Suite-wide guard: no log line of the whole test session shows a recipient unmasked.

Enabled from tests/conftest.py with `pytest_plugins = ["tests.logscan"]` (or `-p tests.logscan`).
Every record logged at INFO or above during the session is formatted as production formats it
(logs.py, logfmt and JSON) and searched for
- every phone number and e-mail address written as a string literal anywhere in tests/ (the
  recipients the tests use), and
- anything shaped like an unmasked recipient ('+' and 8+ digits; 2+ local-part characters before
  '@'), with patterns independent of the masking code they check.
Any hit fails the session (exit status 1) and is listed in the terminal summary with its test.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from outbound_sender.logs import JsonFormatter, LogfmtFormatter

TESTS = Path(__file__).resolve().parent
_LITERAL = re.compile(r"""["'](\+\d{8,15}|[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})["']""")
_UNMASKED = re.compile(r"\+\d{8,}|[A-Za-z0-9._%+-]{2,}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
MAX_REPORTED = 20


def recipients_in_sources(folder: Path = TESTS) -> set[str]:
    """Phone numbers and addresses written as string literals in the test sources."""
    found: set[str] = set()
    for path in folder.rglob("*.py"):
        found.update(_LITERAL.findall(path.read_text(errors="replace")))
    return found


def leaks(line: str, known: re.Pattern[str] | None) -> list[str]:
    """Unmasked recipients in one formatted line."""
    hits = _UNMASKED.findall(line)
    if known is not None:
        hits += known.findall(line)
    return hits


def known_pattern(recipients: set[str]) -> re.Pattern[str] | None:
    if not recipients:
        return None
    ordered = sorted(recipients, key=len, reverse=True)
    return re.compile("|".join(re.escape(r) for r in ordered))


@dataclass
class Leak:
    test: str
    logger: str
    found: list[str]


class ScanHandler(logging.Handler):
    def __init__(self, known: re.Pattern[str] | None) -> None:
        super().__init__(logging.INFO)
        self.known = known
        self.test = "(session)"
        self.records = 0
        self.found: list[Leak] = []
        self._formatters = (LogfmtFormatter(), JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        hits = [hit for f in self._formatters for hit in leaks(f.format(record), self.known)]
        if hits:
            self.found.append(Leak(self.test, record.name, sorted(set(hits))))


_KEY = pytest.StashKey[ScanHandler]()


def pytest_configure(config: pytest.Config) -> None:
    handler = ScanHandler(known_pattern(recipients_in_sources()))
    config.stash[_KEY] = handler
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, ScanHandler):
            handler.test = nodeid


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    handler = session.config.stash.get(_KEY, None)
    if handler is not None and handler.found and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    handler = config.stash.get(_KEY, None)
    if handler is None:
        return
    if not handler.found:
        terminalreporter.write_line(f"logscan: {handler.records} log records, no unmasked recipient")
        return
    terminalreporter.section("logscan: unmasked recipients in log output", red=True)
    for leak in handler.found[:MAX_REPORTED]:
        terminalreporter.write_line(f"{leak.test}  logger={leak.logger}  {', '.join(leak.found)}")
    terminalreporter.write_line(f"{len(handler.found)} log records leak recipients (the session fails)")


def pytest_unconfigure(config: pytest.Config) -> None:
    handler = config.stash.get(_KEY, None)
    if handler is not None:
        logging.getLogger().removeHandler(handler)
