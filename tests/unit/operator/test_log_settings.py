"""The operator's log format and level, from the environment as `outbound-operator` reads them at
start-up (cli.main; its reconciling, `serve`, replaced by two log lines)."""

from __future__ import annotations

import json
import logging

import pytest

from outbound_operator import cli
from outbound_operator.settings import OperatorSettings
from tests.unit.observability.test_log_format import restore_logging

__all__ = ["restore_logging"]  # the fixture, used by name


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["json", "logfmt"])
def test_the_operators_lines_take_the_format_and_level_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    monkeypatch.setenv("OUTBOUND_OPERATOR_DATABASE_URL", "postgresql://unused.invalid/none")
    monkeypatch.setenv("OUTBOUND_OPERATOR_LOG_FORMAT", fmt)
    monkeypatch.setenv("OUTBOUND_OPERATOR_LOG_LEVEL", "WARNING")
    log = logging.getLogger("outbound_operator")

    async def serve(_settings: OperatorSettings) -> None:
        log.info("not at this level")
        log.warning("circuit forced open", extra={"fields": {"provider": "twilio"}})

    monkeypatch.setattr(cli, "serve", serve)
    assert cli.main([]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    if fmt == "json":
        doc = json.loads(lines[0])
        assert (doc["msg"], doc["provider"], doc["level"]) == ("circuit forced open", "twilio", "WARNING")
    else:
        assert lines[0].startswith("ts=")
        assert "level=WARNING" in lines[0]
        assert "provider=twilio" in lines[0]
