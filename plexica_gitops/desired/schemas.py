"""JSON Schemas (draft 2020-12) for each desired-state kind, generated from the models.

One source of truth: the validator checks documents against these schemas (so errors point
at the exact node) and `plexica-gitops schemas` writes the same schemas to `schemas/` for
editors (yaml-language-server). A test keeps the committed files equal to the generated ones.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from plexica_gitops.desired.fastcheck import FastCheck, compile_fast_check
from plexica_gitops.desired.model import DOCUMENT_MODELS

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID_BASE = "https://plexica.io/schemas/v1alpha1/"


class _WithoutFieldTitles(GenerateJsonSchema):
    """Pydantic titles every field after its Python name ("Basepath"); editors show those
    titles, so keep only the model titles and the descriptions we wrote."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        result = super().default_schema(schema)
        # A default of null on a field that is not nullable reads as an error in editors.
        if result.get("default", 0) is None:
            del result["default"]
        return result


def schema_file_name(kind: str) -> str:
    return f"{kind.lower()}.schema.json"


@cache
def kind_schema(kind: str) -> dict[str, Any]:
    model = DOCUMENT_MODELS[kind]
    body = model.model_json_schema(by_alias=True, schema_generator=_WithoutFieldTitles)
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID_BASE + schema_file_name(kind),
        "title": f"plexica-gitops {kind}",
        **{key: value for key, value in body.items() if key != "title"},
    }


@cache
def kind_validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(kind_schema(kind))


@cache
def kind_fast_check(kind: str) -> FastCheck | None:
    """Answers "valid" only for documents `kind_validator` finds nothing wrong with (the
    usual case: its errors are computed for the others alone). Without `$id`, which the
    fast check does not trust: every reference in these schemas is a local pointer."""
    return compile_fast_check({k: v for k, v in kind_schema(kind).items() if k != "$id"})


def render_schema(kind: str) -> str:
    return json.dumps(kind_schema(kind), indent=2, sort_keys=True) + "\n"


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in sorted(DOCUMENT_MODELS):
        path = directory / schema_file_name(kind)
        path.write_text(render_schema(kind), encoding="utf-8")
        written.append(path)
    return written
