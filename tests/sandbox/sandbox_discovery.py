"""A small validator over the schemas of Google's own Calendar v3 discovery document, as
shipped inside google-api-python-client. It checks JSON types, formats, enums and, the
point of the exercise, rejects fields the schema does not define."""

from __future__ import annotations

import datetime as dt
import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def calendar_schemas() -> dict[str, Any]:
    doc = (
        resources.files("googleapiclient")
        .joinpath("discovery_cache/documents/calendar.v3.json")
        .read_text()
    )
    return json.loads(doc)["schemas"]


def problems(value: Any, schema_name: str) -> list[str]:
    schemas = calendar_schemas()
    return _check(value, schemas[schema_name], schemas, schema_name)


def _check(value: Any, schema: dict[str, Any], schemas: dict[str, Any], path: str) -> list[str]:
    if "$ref" in schema:
        schema = schemas[schema["$ref"]]
    kind = schema.get("type")
    out: list[str] = []
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: expected object, got {type(value).__name__}"]
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                out += _check(item, props[key], schemas, f"{path}.{key}")
            elif extra is not None:
                out += _check(item, extra, schemas, f"{path}.{key}")
            else:
                out.append(f"{path}.{key}: not in the discovery schema")
    elif kind == "array":
        if not isinstance(value, list):
            return [f"{path}: expected array"]
        for i, item in enumerate(value):
            out += _check(item, schema.get("items", {}), schemas, f"{path}[{i}]")
    elif kind == "string":
        if not isinstance(value, str):
            return [f"{path}: expected string, got {type(value).__name__}"]
        fmt = schema.get("format")
        try:
            if fmt in ("int64", "uint64"):
                int(value)
            elif fmt == "date-time":
                parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
                if parsed.tzinfo is None:
                    out.append(f"{path}: date-time without offset")
            elif fmt == "date":
                dt.date.fromisoformat(value)
        except ValueError:
            out.append(f"{path}: bad {fmt} {value!r}")
        if "enum" in schema and value not in schema["enum"]:
            out.append(f"{path}: {value!r} not in {schema['enum']}")
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            out.append(f"{path}: expected integer")
    elif kind == "boolean":
        if not isinstance(value, bool):
            out.append(f"{path}: expected boolean")
    elif kind == "number" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        out.append(f"{path}: expected number")
    return out


def assert_valid(value: Any, schema_name: str) -> None:
    found = problems(value, schema_name)
    assert not found, f"{schema_name} does not match Google's discovery schema: {found}"
