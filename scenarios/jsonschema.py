"""The published JSON Schema of scenario files, generated from the pydantic models.

Editors (yaml-language-server) use the committed ``scenario.schema.json`` to complete
and check scenario files as they are typed; generating it from the models keeps one
source of truth, and a test fails when the committed copy falls behind.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlops_drill.scenarios.schema import Scenario

#: Where the committed schema lives (beside the catalogue that references it).
SCHEMA_PATH = Path(__file__).resolve().parent / "scenario.schema.json"


def json_schema() -> dict[str, Any]:
    """The scenario JSON Schema (draft 2020-12) as a dict."""
    schema = Scenario.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def render_json_schema() -> str:
    """Stable text (sorted keys, trailing newline) so regenerating is a no-op diff."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json_schema(path: str | Path = SCHEMA_PATH) -> Path:
    """Write the schema to ``path`` (default: the committed copy) and return the path."""
    target = Path(path)
    target.write_text(render_json_schema(), encoding="utf-8")
    return target
