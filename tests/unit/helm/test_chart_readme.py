"""The chart's README is generated from values.schema.json (hack/chart_readme.py) and kept current."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from types import ModuleType
from typing import Any

import yaml

from .chart import CHART, ROOT

SCRIPT = ROOT / "hack" / "chart_readme.py"


def chart_readme() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_readme", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def inputs() -> tuple[dict[str, Any], Any, dict[str, Any]]:
    schema = json.loads((CHART / "values.schema.json").read_text())
    return (
        schema,
        yaml.safe_load((CHART / "values.yaml").read_text()),
        yaml.safe_load((CHART / "Chart.yaml").read_text()),
    )


def test_the_committed_readme_is_the_generated_one() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert (CHART / "README.md").read_text() == chart_readme().current()


def test_every_value_of_the_schema_has_its_row_with_default_and_description() -> None:
    text = (CHART / "README.md").read_text()
    for row in (
        "| `operator.replicas` | integer | `2` |",
        "| `operator.podDisruptionBudget.maxUnavailable` |",
        '| `monitoring.runbookBaseUrl` | string | `""` |',
        "| `imagePullSecrets` | array | `[]` |",
    ):
        assert row in text, row
    schema, _, _ = inputs()
    assert schema["properties"]["operator"]["properties"]["replicas"]["description"] in text


def test_a_schema_or_default_change_makes_the_readme_stale() -> None:
    """What the --check above guards: an edited description, a new value or a new default shows up."""
    module = chart_readme()
    schema, values, chart = inputs()
    before = module.render(schema, values, chart)
    edited = copy.deepcopy(schema)
    edited["properties"]["operator"]["properties"]["replicas"]["description"] = "Changed in the schema."
    edited["properties"]["operator"]["properties"]["newSetting"] = {"type": "string", "description": "Brand new."}
    after = module.render(edited, values, chart)
    assert after != before
    assert "| `operator.replicas` | integer | `2` | Changed in the schema. |" in after
    assert "| `operator.newSetting` | string |  | Brand new. |" in after
    three = copy.deepcopy(values)
    three["operator"]["replicas"] = 3
    rendered = module.render(schema, three, chart)
    assert "| `operator.replicas` | integer | `3` |" in rendered
    assert "`operator.replicas` (3)" in rendered
