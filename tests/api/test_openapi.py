"""The OpenAPI document at /api/openapi.json is the contract: every route, with schemas."""

from __future__ import annotations

import re

from flask import Flask

NOT_API = ("/api/openapi.json", "/api/docs")


def spec_path(rule: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)


def test_the_document_lists_every_api_route(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/api/openapi.json").get_json()

    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.rule.startswith(NOT_API):
            continue
        path = spec_path(rule.rule)
        assert path in spec["paths"], f"{rule.rule} is missing from the OpenAPI document"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert method.lower() in spec["paths"][path], f"{method} {path} is undocumented"


def test_every_change_documents_its_request_body(client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/api/openapi.json").get_json()
    bodyless = {("post", "/api/auth/signin-link"), ("post", "/api/auth/signout")}

    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method in ("post", "put", "patch") and (method, path) not in bodyless:
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                assert schema, f"{method} {path} has no request schema"


def test_every_json_answer_documents_its_schema(client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/api/openapi.json").get_json()

    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            for status, response in operation["responses"].items():
                if "$ref" in response or status in ("204", "302"):
                    continue
                content = response.get("content", {}).get("application/json", {})
                assert "schema" in content, f"{method} {path} {status} has no schema"


def test_errors_are_documented_with_the_one_error_shape(client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/api/openapi.json").get_json()

    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    detail = spec["components"]["schemas"]["ErrorDetail"]
    assert set(detail["properties"]) == {"status", "message", "fields"}
    assert spec["paths"]["/api/me"]["get"]["responses"]["default"]


def test_the_interactive_docs_are_served(client) -> None:  # type: ignore[no-untyped-def]
    reply = client.get("/api/docs")

    assert reply.status_code == 200
    assert b"swagger-ui" in reply.data
