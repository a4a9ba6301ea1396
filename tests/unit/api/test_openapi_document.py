"""docs/openapi.json is the published document: it must equal what the app serves."""

from __future__ import annotations

import json
from pathlib import Path

from outbound_sender.api.app import openapi_document

PUBLISHED = Path(__file__).parents[3] / "docs" / "openapi.json"


def test_published_document_is_current() -> None:
    current = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    assert PUBLISHED.read_text() == current, "regenerate: python -m outbound_sender.api.app > docs/openapi.json"


def test_every_operation_documents_its_errors() -> None:
    document = openapi_document()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if path.startswith("/v1/"):
                assert {"401", "422", "429"} <= set(operation["responses"]), (method, path)
                assert any(p["name"] == "X-Correlation-ID" for p in operation["parameters"]), (method, path)
