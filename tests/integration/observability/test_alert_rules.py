"""promtool: the rules load, and every alert fires at the runbook's threshold and stays silent below."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from tests.monitoring import RULE_TESTS, RULES, alert_rules
from tests.prometheus import binaries


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(binaries().promtool), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.timeout(600)  # may install Debian's prometheus package on first use
def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


@pytest.mark.timeout(600)
def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_silent() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    names = {str(rule["alert"]) for rule in alert_rules()}
    assert names <= fired, f"never tested firing: {names - fired}"
    assert names <= silent, f"never tested silent: {names - silent}"

    def labels(alert: Any) -> tuple[str, str]:
        return alert["severity"], alert["priority"]

    seen = {(c["alertname"], *labels(a["exp_labels"])) for c in cases for a in c["exp_alerts"]}
    declared = {(str(r["alert"]), *labels(r["labels"])) for r in alert_rules()}
    assert declared <= seen, f"severity/priority never seen firing: {declared - seen}"
