"""The OpenAPI document, completed with what every route shares and FastAPI cannot infer:
the bearer key, the answers every keyed route may give, ``X-Runner-ID`` required where a
route reads it, and the JSON values Runpack stores.

Routes declare what is theirs (their models, 404, 409, 429); ``complete`` adds the rest
once, here, so no route repeats it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runpack_tasks.jobstore.payloads import MAX_SAFE_INTEGER

if TYPE_CHECKING:
    from fastapi import FastAPI

#: The one security scheme: every /api route takes ``Authorization: Bearer <key>``.
BEARER = "bearer"
#: Text a column can store: anything but NUL.
STORABLE_TEXT_PATTERN = "^[^\\u0000]*$"
STORABLE_TEXT: dict[str, Any] = {"type": "string", "pattern": STORABLE_TEXT_PATTERN}
#: Any JSON value Runpack stores: integers within JavaScript's safe range (a float
#: with a fraction may be any finite number), text without NUL, objects and arrays of
#: the same.
JSON_VALUE: dict[str, Any] = {
    "description": "Any JSON value; integers within +-(2^53 - 1), no NUL in text",
    "anyOf": [
        {"type": "null"},
        {"type": "boolean"},
        {"type": "integer", "minimum": -MAX_SAFE_INTEGER, "maximum": MAX_SAFE_INTEGER},
        {"type": "number", "not": {"type": "integer"}},
        STORABLE_TEXT,
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {"$ref": "#/components/schemas/JsonObject"},
    ],
}
JSON_OBJECT: dict[str, Any] = {
    "type": "object",
    "propertyNames": STORABLE_TEXT,
    "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
}
#: What a model's stored JSON object says in its own schema (pydantic cannot refer to
#: the document's components); ``complete`` replaces it with ``JSON_OBJECT``.
JSON_OBJECT_MARK: dict[str, Any] = {"type": "object", "x-runpack-json-object": True}

_ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorBody"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_SCHEMA}}}


#: The answers any keyed route may give, whatever it does.
KEYED_ANSWERS = {
    "400": _error("Malformed request: a parameter, header or body Runpack does not take"),
    "401": _error("Missing or wrong API key"),
}
BODY_TOO_LARGE = _error("The body, or one of its fields, is over its size limit")


def _runner_id_required(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "header" and parameter["name"].lower() == "x-runner-id":
            parameter["required"] = True
            parameter["schema"] = {"type": "string", "minLength": 1, "maxLength": 64}


def _complete_operation(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)  # validation errors are 400s (errors.py)
    operation["security"] = [{BEARER: []}]
    for status, answer in KEYED_ANSWERS.items():
        responses.setdefault(status, answer)
    if "requestBody" in operation:
        responses.setdefault("413", BODY_TOO_LARGE)
    _runner_id_required(operation)


def _stored_json(node: Any) -> Any:
    """``node`` with every ``JSON_OBJECT_MARK`` replaced by a reference to JsonObject."""
    if isinstance(node, dict):
        if node.get("x-runpack-json-object"):
            return {"$ref": "#/components/schemas/JsonObject"}
        return {key: _stored_json(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_stored_json(item) for item in node]
    return node


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the shared parts added."""
    document = _stored_json(document)
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "description": "One of the three API keys: submit, runner or admin",
    }
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["JsonValue"] = JSON_VALUE
    schemas["JsonObject"] = JSON_OBJECT
    for path, operations in document.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for operation in operations.values():
            _complete_operation(operation)
    return document


def install(app: FastAPI) -> None:
    """Serve ``complete``'s document as the app's /openapi.json (built once)."""
    # imported here, not with the module: the API's clients load this module's constants
    # through the schemas, and need no FastAPI
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    summary=app.summary,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
