"""The suite-wide log scan (tests/logscan.py): what it detects, and that it fails a session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.logscan import TESTS, known_pattern, leaks, recipients_in_sources

ROOT = TESTS.parent
LEAKY = """
import logging
import outbound_sender.logs as logs

def test_leaks(monkeypatch):
    monkeypatch.setattr(logs, "mask", lambda text: text)  # a formatter that forgot to mask
    logging.getLogger("OutboundJobWorker").info("sending to +15551239876")
"""
CLEAN = """
import logging

def test_clean():
    logging.getLogger("OutboundJobWorker").info("sending to +15551239876 and zed@example.com")
"""


def test_recipients_used_by_the_tests_are_known() -> None:
    found = recipients_in_sources()
    assert "+15550000001" in found  # harness.PERMANENT_SMS
    assert "bounce@example.com" in found


def test_unmasked_shapes_are_found_and_masked_forms_are_not() -> None:
    known = known_pattern({"+1 555 000 1111"})
    assert leaks("to=+15551234567", None) == ["+15551234567"]
    assert leaks("to=alice@example.com", None) == ["alice@example.com"]
    assert leaks('msg="call +1 555 000 1111"', known) == ["+1 555 000 1111"]
    assert leaks("to=+*******4567 email=a***@example.com", known) == []


def run_session(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    test_file = tmp_path / "test_scan_target.py"
    test_file.write_text(source)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "tests.logscan",
        "-p",
        "no:cacheprovider",
        str(test_file),
    ]
    return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=False)


def test_a_leaking_log_line_fails_the_session(tmp_path: Path) -> None:
    result = run_session(tmp_path, LEAKY)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "unmasked recipients in log output" in result.stdout
    assert "test_leaks" in result.stdout


def test_a_masked_session_passes(tmp_path: Path) -> None:
    result = run_session(tmp_path, CLEAN)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no unmasked recipient" in result.stdout
