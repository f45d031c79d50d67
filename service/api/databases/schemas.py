"""Schemas of registered databases."""

import marshmallow as ma
from marshmallow import validate

from service.api.fields import FullMatch, config_uuid, page_of, timestamp
from service.config import SERVER_NAME

# CouchDB's rule for database names.
DATABASE_NAME = FullMatch(
    r"^[a-z][a-z0-9_$()+/-]*$",
    error="Not a CouchDB database name: a lowercase letter, then a-z 0-9 _ $ ( ) + - /.",
)


class DatabaseRegisterSchema(ma.Schema):
    database = ma.fields.String(
        required=True,
        validate=[validate.Length(max=238), DATABASE_NAME],
        metadata={"example": "inventory-alice"},
    )
    server = ma.fields.String(
        validate=FullMatch(
            f"^{SERVER_NAME.pattern}$",
            error="Not a server name: a lowercase letter, then up to 31 of a-z 0-9 _.",
        ),
        metadata={
            "example": "default",
            "description": "The server that holds the database, by the name the operator gave"
            " it. By default the caller's own server (`default` for admins).",
        },
    )


class DatabaseSchema(ma.Schema):
    config_uuid = config_uuid()
    database = ma.fields.String(metadata={"example": "inventory-alice"})
    server = ma.fields.String(metadata={"example": "default"})
    registered_at = timestamp()


DatabasePageSchema = page_of(DatabaseSchema, "DatabasePage")


class DisputeSchema(ma.Schema):
    config_uuid = config_uuid()
    claims = ma.fields.List(
        ma.fields.String(),
        metadata={"description": "The databases that claimed the UUID after its registration."},
    )
    since = timestamp()


class DisputeListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(DisputeSchema), required=True)
