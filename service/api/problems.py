"""RFC 9457 problem responses for every error the API returns."""

from http import HTTPStatus

import marshmallow as ma
from flask import Response, json

PROBLEM_TYPE = "application/problem+json"


class ProblemSchema(ma.Schema):
    """An error, as `application/problem+json`."""

    type = ma.fields.String(metadata={"example": "about:blank"})
    title = ma.fields.String(metadata={"example": "Unprocessable Entity"})
    status = ma.fields.Integer(metadata={"example": 422})
    detail = ma.fields.String(metadata={"example": "owner: Not a valid Configuration UUID."})
    errors = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.List(ma.fields.String()),
        metadata={"description": "Messages per field, on validation failures"},
    )


def problem(
    status: int,
    detail: str,
    errors: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A problem response with the status's standard title."""
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    body["detail"] = detail
    if errors:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_TYPE)
    response.headers.update(headers or {})
    return response


def field_errors(messages: object, prefix: str = "") -> dict[str, list[str]]:
    """Flatten webargs/marshmallow messages to {"field.path": [messages]}."""
    if isinstance(messages, dict):
        flat: dict[str, list[str]] = {}
        for key, value in messages.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            flat.update(field_errors(value, path))
        return flat
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return {prefix or "request": list(messages)}
    return {prefix or "request": [str(messages)]}


def validation_detail(errors: dict[str, list[str]]) -> str:
    """One line naming every field at fault."""
    return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
