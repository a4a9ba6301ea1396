"""Keep the Helm chart in step with its single sources, and generate its values reference.

    python hack/chart_sync.py           # rewrite the chart's copies and docs/helm-values.md
    python hack/chart_sync.py --check   # exit 1 listing what is out of date (the tests run this)

Helm reads nothing outside the chart folder, so the chart carries copies of:

- crds/*.yaml                                   -> charts/outbound-messaging/crds/
- monitoring/alerts/outbound-messaging.rules.yaml, monitoring/dashboards/*.json
                                                -> charts/outbound-messaging/files/monitoring/
- deploy/operator-rbac.yaml (the operator's rules in a namespace it serves) and
  deploy/operator-rbac-cluster-wide.yaml (the custom resources everywhere, for clusterWide)
                                                -> charts/outbound-messaging/files/

and derives from the CRDs the JSON Schema of `channelProviders.<name>` and `quotaPolicies.<name>` in
values.schema.json (so a bad spec fails at `helm install`, before the API server sees it), and from
the provider registry the names `api.webhookProviders` accepts. The
values reference docs/helm-values.md is generated from values.schema.json and values.yaml.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from outbound_sender.providers import registry

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "outbound-messaging"
SCHEMA = CHART / "values.schema.json"
VALUES = CHART / "values.yaml"
DOCS = ROOT / "docs" / "helm-values.md"
SPEC_DEFINITIONS = {
    "channelProviderSpec": ROOT / "crds" / "channelproviders.messaging.outbound.dev.yaml",
    "quotaPolicySpec": ROOT / "crds" / "quotapolicies.messaging.outbound.dev.yaml",
}
# Kubernetes-only keywords (CEL rules, list types, int-or-string markers) and formats JSON Schema
# does not know: the API server still enforces them when the object is applied.
DROPPED_KEYWORDS = ("x-kubernetes-", "format")


@dataclass(frozen=True)
class Output:
    path: Path
    content: bytes


def copies() -> Iterator[Output]:
    for crd in sorted((ROOT / "crds").glob("*.yaml")):
        yield Output(CHART / "crds" / crd.name, crd.read_bytes())
    monitoring = ROOT / "monitoring"
    for source in [
        monitoring / "alerts" / "outbound-messaging.rules.yaml",
        *(monitoring / "dashboards").glob("*.json"),
    ]:
        yield Output(CHART / "files" / source.relative_to(ROOT), source.read_bytes())
    for name in ("operator-rbac.yaml", "operator-rbac-cluster-wide.yaml"):
        rbac = ROOT / "deploy" / name
        if rbac.exists():
            yield Output(CHART / "files" / name, rbac.read_bytes())


def json_schema(node: Any) -> Any:
    """A CRD's OpenAPI v3 schema as JSON Schema: objects with properties accept no unknown keys."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: json_schema(value) for key, value in node.items() if not key.startswith(DROPPED_KEYWORDS)}
    if "properties" in out:
        out["properties"] = {name: json_schema(sub) for name, sub in node["properties"].items()}
        out.setdefault("additionalProperties", False)
    return out


def crd_spec_schema(path: Path) -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    spec: dict[str, Any] = json_schema(version["schema"]["openAPIV3Schema"]["properties"]["spec"])
    return spec


def schema_text() -> str:
    schema = json.loads(SCHEMA.read_text())
    for name, crd in SPEC_DEFINITIONS.items():
        schema["definitions"][name] = crd_spec_schema(crd)
    webhooks = schema["properties"]["api"]["properties"]["webhookProviders"]["items"]
    webhooks["enum"] = [provider.name for provider in registry.with_webhooks()]
    return json.dumps(schema, indent=2) + "\n"


def outputs() -> list[Output]:
    result = list(copies())
    result.append(Output(SCHEMA, schema_text().encode()))
    result.append(
        Output(DOCS, values_reference(json.loads(schema_text()), yaml.safe_load(VALUES.read_text())).encode())
    )
    return result


# -- docs/helm-values.md ---------------------------------------------------------------------


def _type(node: dict[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{value}`" for value in node["enum"])
    if "anyOf" in node:
        return " or ".join(_type(option) for option in node["anyOf"])
    kind = node.get("type", "object")
    return str(kind)


def _default(values: Any, path: list[str]) -> str:
    for part in path:
        if not isinstance(values, dict) or part not in values:
            return ""
        values = values[part]
    if isinstance(values, dict | list) and values:
        return "see values.yaml"
    return f"`{json.dumps(values)}`"


def _rows(node: dict[str, Any], values: Any, path: list[str]) -> Iterator[str]:
    properties = node.get("properties")
    if properties and node.get("additionalProperties") is False:
        for name, sub in properties.items():
            yield from _rows(sub, values, [*path, name])
        return
    description = str(node.get("description", "")).replace("|", "\\|").replace("\n", " ")
    yield f"| `{'.'.join(path)}` | {_type(node)} | {_default(values, path)} | {description} |"


def values_reference(schema: dict[str, Any], values: Any) -> str:
    header = [
        "# Helm values reference",
        "",
        "<!-- Generated by hack/chart_sync.py from charts/outbound-messaging/values.schema.json: do not edit. -->",
        "",
        "Every value of the `outbound-messaging` chart. `helm install` validates the values against",
        "`values.schema.json`, so a wrong type, an unknown key or a bad name fails before anything is",
        "applied. `channelProviders.<name>` and `quotaPolicies.<name>` take the CRDs' `spec`",
        "(`kubectl explain channelprovider.spec`, `kubectl explain quotapolicy.spec`); the API server",
        "checks the cross-field rules when the objects are applied. Install guide: [install.md](install.md).",
        "",
        "| value | type | default | description |",
        "| --- | --- | --- | --- |",
    ]
    rows = [row for name, sub in schema["properties"].items() for row in _rows(sub, values, [name])]
    return "\n".join([*header, *rows]) + "\n"


# -- command line ----------------------------------------------------------------------------


def stale(items: list[Output]) -> list[Path]:
    return [item.path for item in items if not item.path.exists() or item.path.read_bytes() != item.content]


def extra_crds() -> list[Path]:
    wanted = {path.name for path in (ROOT / "crds").glob("*.yaml")}
    return [path for path in (CHART / "crds").glob("*.yaml") if path.name not in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report what is out of date")
    args = parser.parse_args(argv)
    items = outputs()
    out_of_date = stale(items) + extra_crds()
    if args.check:
        for path in out_of_date:
            print(f"out of date: {path.relative_to(ROOT)} (run python hack/chart_sync.py)", file=sys.stderr)
        return 1 if out_of_date else 0
    for path in extra_crds():
        path.unlink()
    for item in items:
        item.path.parent.mkdir(parents=True, exist_ok=True)
        item.path.write_bytes(item.content)
    print(f"chart in sync: {len(items)} files checked, {len(out_of_date)} rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
