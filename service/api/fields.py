"""Fields, query schemas and error docs shared by the resources."""

from http import HTTPStatus

import marshmallow as ma
from marshmallow import validate
from werkzeug.routing import BaseConverter


class FullMatch(validate.Regexp):
    """A pattern the whole value must match: with `re.match`, `$` lets `value\n` through."""

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value


CONFIG_UUID = FullMatch(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    error="Not a valid Configuration UUID (lowercase UUID).",
)
EXAMPLE_OWNER = "5b1f0c7e-2d4a-4c8e-9a51-0c6f3e2b7a10"
EXAMPLE_RECIPIENT = "9e8d7c6b-1111-4a2b-8c3d-222233334444"


class ConfigUuidPath(BaseConverter):
    """A Configuration UUID in a path: any segment but `disputes`, which is a resource of
    its own beside it, so that `Allow` on `/v1/databases/disputes` lists its methods only."""

    regex = r"(?!disputes\Z)[^/]+"


def config_uuid(example: str = EXAMPLE_OWNER, **kwargs) -> ma.fields.String:
    """A Configuration UUID, as stored in `0000-config`."""
    return ma.fields.String(validate=CONFIG_UUID, metadata={"example": example}, **kwargs)


def timestamp() -> ma.fields.String:
    return ma.fields.String(metadata={"format": "date-time", "example": "2026-11-26T12:00:00Z"})


class PageQuerySchema(ma.Schema):
    """Cursor pagination: pass `next_cursor` of one page as `cursor` for the next."""

    limit = ma.fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = ma.fields.String(
        validate=FullMatch(CONFIG_UUID.regex, error="Not a cursor: pass next_cursor as it came."),
        metadata={"description": "`next_cursor` of the page before."},
    )


def page_of(item_schema: type[ma.Schema], name: str) -> type[ma.Schema]:
    """A page of items and the cursor of the next page, or null on the last one."""
    return ma.Schema.from_dict(
        {
            "items": ma.fields.List(ma.fields.Nested(item_schema), required=True),
            "next_cursor": ma.fields.String(allow_none=True, required=True),
        },
        name=name,
    )


def problems(blp, *codes: int):
    """Document the problem responses a view may give, besides 401, 429 and 503 for all."""

    def decorate(view):
        for code in sorted({401, 429, 503, *codes}):
            view = blp.alt_response(code, response=HTTPStatus(code).name)(view)
        return view

    return decorate
