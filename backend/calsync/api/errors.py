"""One error shape for every response: ``{"error": {"status", "message", "fields"?}}``.

``message`` is a sentence a person can act on; ``fields`` maps each refused input to
what is wrong with it. Validation errors from flask-smorest (422, webargs's nested
``messages``) are turned into that shape with the labels the user sees ("Sync
direction"), and nothing from an exception (stack, SQL, paths) ever reaches a response.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import marshmallow as ma
from flask import Flask, Response, current_app, jsonify
from flask_smorest import Api, abort
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from calsync.profiles import SETTING_LABELS

# Labels for the inputs outside the sync settings.
FIELD_LABELS = {
    **SETTING_LABELS,
    "crm_type": "CRM",
    "crm_url": "Custom URL",
    "name": "Name",
    "email": "Email",
    "token": "Sign-in token",
    "is_admin": "Administrator",
    "sync_profile_id": "Sync profile",
    "settings": "Settings",
    "tenant_id": "Tenant id",
    "object_id": "Object id",
}
INTERNAL_ERROR = "Something went wrong on our side. Try again in a minute."


class ErrorDetail(ma.Schema):
    status = ma.fields.Integer(required=True, metadata={"description": "The HTTP status."})
    message = ma.fields.String(
        required=True, metadata={"description": "What went wrong and what to do, in words."}
    )
    fields = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        metadata={"description": "For refused input: each field and what is wrong with it."},
    )


class ErrorSchema(ma.Schema):
    error = ma.fields.Nested(ErrorDetail, required=True)


def error_response(status: int, message: str, fields: Mapping[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"status": status, "message": message}
    if fields:
        body["fields"] = dict(fields)
    response = jsonify(error=body)
    response.status_code = status
    return response


def label(path: str) -> str:
    return FIELD_LABELS.get(path.rsplit(".", 1)[-1], path)


def flatten(messages: Any, prefix: str = "") -> dict[str, str]:
    """webargs/marshmallow nested messages -> {"settings.direction": "first message"}."""
    if isinstance(messages, str):
        return {prefix or "_schema": messages}
    if isinstance(messages, list):
        strings = [m for m in messages if isinstance(m, str)]
        if strings:
            return {prefix or "_schema": strings[0]}
        out: dict[str, str] = {}
        for item in messages:
            out.update(flatten(item, prefix))
        return out
    out = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            # webargs groups by location ("json", "query"); users don't care where.
            if not prefix and key in ("json", "query", "path", "form", "headers", "cookies"):
                out.update(flatten(value, ""))
            elif key == "_schema":
                out.update(flatten(value, prefix))
            else:
                out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def sentence(fields: Mapping[str, str]) -> str:
    parts = []
    for path, message in fields.items():
        if path == "_schema" or message.startswith('"'):
            parts.append(message)  # already names what it is about
        else:
            parts.append(f'"{label(path)}": {message}')
    return "Please check your input. " + " ".join(
        p if p.endswith((".", "!", "?")) else p + "." for p in parts
    )


def refuse(status: int, message: str, fields: Mapping[str, str] | None = None) -> NoReturn:
    """Stop the request with ``status``, a sentence, and optionally the refused fields."""
    abort(status, message=message, fields=dict(fields) if fields else None)
    raise AssertionError("abort raises")


def validation_error(status: int, messages: Any) -> Response:
    fields = flatten(messages)
    public = {k: v for k, v in fields.items() if k != "_schema"}
    return error_response(status, sentence(fields), public or None)


def http_error(error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    if data.get("message") and "messages" not in data:
        response = error_response(status, data["message"], data.get("fields"))
        for name, value in (data.get("headers") or {}).items():
            response.headers[name] = value
        return response
    if "messages" in data or "errors" in data:
        return validation_error(status, data.get("errors") or data.get("messages"))
    if isinstance(error, NotFound) and _default(error):
        message = "There is nothing at this address."
    elif isinstance(error, MethodNotAllowed) and _default(error):
        message = "This address does not accept this kind of request."
    elif isinstance(error, RequestEntityTooLarge):
        limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
        message = f"The request is too large: the limit is {limit // 1024} KB."
    elif status == 500:
        message = INTERNAL_ERROR  # never the exception's own words
    else:
        message = data.get("message") or error.description or error.name
    response = error_response(status, message)
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    for name, value in (data.get("headers") or {}).items():
        response.headers[name] = value
    return response


def _default(error: HTTPException) -> bool:
    return error.description == type(error).description


class CalsyncApi(Api):
    """flask-smorest's Api, documenting and producing our error shape."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException) -> Response:  # type: ignore[override]
        return http_error(error)


def init_app(app: Flask) -> None:
    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        if isinstance(error, HTTPException):  # raised outside flask-smorest's reach
            return http_error(error)
        app.logger.exception("unhandled error")
        return error_response(500, INTERNAL_ERROR)
