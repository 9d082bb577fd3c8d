"""The OpenAPI document, with the errors that arise outside the endpoints themselves (the
acting organization, cursors, request bodies) documented on every operation they reach."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string", "description": "What to fix, in plain words."}},
    "required": ["detail"],
}
ORG_HEADER = "x-org-id"
BAD_ORG = (
    "`X-Org-Id` is not an organization UUID, or is missing while you belong to several "
    "organizations."
)
BAD_CURSOR = "`cursor` is not the `next_cursor` of a previous page."
BAD_BODY = "The request body cannot be read (for example, it is not UTF-8)."
TOO_LARGE = "The request body is larger than MAX_REQUEST_BODY_BYTES (1 MiB by default)."


def _parameters(operation: dict[str, Any]) -> set[tuple[str, str]]:
    return {(p["in"], p["name"].lower()) for p in operation.get("parameters", [])}


def _document_errors(operation: dict[str, Any]) -> None:
    parameters = _parameters(operation)
    causes = []
    if ("header", ORG_HEADER) in parameters:
        causes.append(BAD_ORG)
    if ("query", "cursor") in parameters:
        causes.append(BAD_CURSOR)
    if "requestBody" in operation:
        causes.append(BAD_BODY)
        operation["responses"].setdefault("413", {"description": TOO_LARGE})
    if causes:
        bad_request = operation["responses"].setdefault("400", {"description": ""})
        described = [bad_request["description"]] if bad_request["description"] else []
        bad_request["description"] = " ".join([*described, *causes])
    for code, response in operation["responses"].items():
        if code.startswith("4") and code not in ("413", "422") and "content" not in response:
            response["content"] = {"application/json": {"schema": ERROR_SCHEMA}}


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document (built once), every operation's 4xx answers included."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for path in schema["paths"].values():
            for operation in path.values():
                _document_errors(operation)
        app.openapi_schema = schema
    return app.openapi_schema
