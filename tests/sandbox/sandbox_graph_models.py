"""Parse Graph JSON with msgraph-sdk's own generated models and report unknown fields.

kiota puts every property its model does not know into ``additional_data``; OData
annotations ("@odata.etag", "@removed") legitimately land there too, and so do the custom
properties of open extensions. Anything else means the emulator invented a field.
"""

from __future__ import annotations

import json
from typing import Any

from kiota_abstractions.serialization import Parsable
from kiota_serialization_json.json_parse_node import JsonParseNode
from msgraph.generated.models.event import Event
from msgraph.generated.models.open_type_extension import OpenTypeExtension


def unknown_fields(obj: Any, path: str = "event") -> list[str]:
    problems: list[str] = []
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            problems += unknown_fields(item, f"{path}[{i}]")
        return problems
    if not isinstance(obj, Parsable):
        return problems
    extra = getattr(obj, "additional_data", None) or {}
    if not isinstance(obj, OpenTypeExtension):
        # OData annotations: "@odata.etag", and property annotations "x@odata.context".
        problems += [f"{path}.{k}" for k in extra if "@" not in k]
    for name, value in vars(obj).items():
        if name in ("additional_data", "backing_store") or value is None:
            continue
        problems += unknown_fields(value, f"{path}.{name}")
    return problems


def parse_event(data: dict[str, Any]) -> Event:
    node = JsonParseNode(json.loads(json.dumps(data)))
    event = node.get_object_value(Event)
    assert event is not None
    return event


def assert_graph_event(data: dict[str, Any]) -> Event:
    event = parse_event(data)
    problems = unknown_fields(event)
    assert not problems, f"fields unknown to msgraph-sdk's Event model: {problems}"
    return event
