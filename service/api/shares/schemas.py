"""Schemas of shares."""

from typing import ClassVar

import marshmallow as ma
from marshmallow import validate

from service.api.fields import (
    EXAMPLE_RECIPIENT,
    FullMatch,
    PageQuerySchema,
    config_uuid,
    page_of,
    timestamp,
)
from service.sharing.core.model import Access, Direction, Status
from service.sharing.crossing.preview import FIRST
from service.sharing.crossing.rules import FIELD, MAX_REGEX, MAX_RULES, RULE_TYPES

COLLECTION_ID = FullMatch(
    r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$",
    error="Not a collection id: the id after `collection-`, letters, digits, - and _.",
)
ACCESS = validate.OneOf([str(a) for a in Access])


def collections_field(**kwargs) -> ma.fields.List:
    return ma.fields.List(
        ma.fields.String(validate=COLLECTION_ID),
        allow_none=True,
        validate=validate.Length(min=1, max=500),
        metadata={
            "description": "Collection ids without the `collection-` prefix; null for all.",
            "example": ["c0ll-uuid-1"],
        },
        **kwargs,
    )


class RuleSchema(ma.Schema):
    type = ma.fields.String(
        required=True,
        validate=validate.OneOf(RULE_TYPES),
        metadata={"description": "The doc type the rule filters.", "example": "item"},
    )
    where = ma.fields.Dict(
        required=True,
        metadata={
            "description": "A Mango selector over fields under `data.`, with `$eq`, `$ne`,"
            " `$in`, `$nin`, `$exists`, `$gt`, `$gte`, `$lt`, `$lte` (numbers), `$and`,"
            " `$or`, `$not`, `$elemMatch`, `$all`, `$size` and `$regex` (up to"
            f" {MAX_REGEX} characters, no quantified groups).",
            "example": {"data.item_type": "container"},
            "json_schema": {
                "minProperties": 1,
                "propertyNames": {
                    "anyOf": [
                        {"enum": ["$and", "$or", "$not"]},
                        {"pattern": f"^{FIELD.pattern}$"},
                    ]
                },
            },
        },
    )


def rules_field(**kwargs) -> ma.fields.List:
    return ma.fields.List(
        ma.fields.Nested(RuleSchema),
        allow_none=True,
        validate=validate.Length(min=1, max=MAX_RULES),
        metadata={
            "description": "Custom rules that narrow what is shared; null for none. A doc of"
            " a type some rule names crosses only if it passes one of that type's rules;"
            " pictures follow their items.",
        },
        **kwargs,
    )


class DryRunQuerySchema(ma.Schema):
    dry_run = ma.fields.Boolean(
        load_default=False,
        metadata={"description": "Write nothing: answer 200 with what would be shared."},
    )


class PreviewSchema(ma.Schema):
    total = ma.fields.Integer(metadata={"description": "Docs that leave the owner's database."})
    counts = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Integer(),
        metadata={"example": {"collection": 1, "item": 3, "item_image": 2, "image": 2}},
    )
    first_ids = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.List(ma.fields.String()),
        metadata={"description": f"The first {FIRST} ids of each type, in `_id` order."},
    )


class ShareCreateSchema(ma.Schema):
    owner = config_uuid(required=True)
    recipient = config_uuid(EXAMPLE_RECIPIENT, required=True)
    access = ma.fields.String(required=True, validate=ACCESS, metadata={"example": "read"})
    collections = collections_field(load_default=None)
    rules = rules_field(load_default=None)
    auto_accept = ma.fields.Boolean(
        load_default=None,
        metadata={
            "description": "Admins only: provision at once, without the recipient's consent."
            " Admin shares default to true; users' shares always start pending."
        },
    )


class SharePatchSchema(ma.Schema):
    class Meta:
        json_schema: ClassVar[dict] = {"minProperties": 1}  # see _changes_something

    access = ma.fields.String(validate=ACCESS, metadata={"example": "read-write"})
    collections = collections_field()
    rules = rules_field()

    @ma.validates_schema
    def _changes_something(self, data, **_kwargs):
        if not data:
            raise ma.ValidationError("Give access, collections, rules or several.", "access")


class ShareQuerySchema(PageQuerySchema):
    database = config_uuid()
    with_status = ma.fields.Boolean(
        load_default=False,
        metadata={
            "description": "Add each replication's recorded state, for the whole page at"
            " once: what `_scheduler/docs` said when the broker last asked (`as_of`, every"
            " 15 s): `running`, `initializing`, `pending`, `crashing` or `failed`, or `idle`"
            " between runs in on-change mode; `missing` if its replicator doc is gone;"
            " `unknown` if not asked since the share changed. GET one share for its live"
            " state."
        },
    )
    role = ma.fields.String(
        load_default="any", validate=validate.OneOf(["owner", "recipient", "any"])
    )
    status = ma.fields.String(validate=validate.OneOf([str(s) for s in Status]))

    @ma.validates_schema
    def _role_needs_database(self, data, **_kwargs):
        if data["role"] != "any" and "database" not in data:
            raise ma.ValidationError("role needs a database to apply to.", "role")


class RevokeQuerySchema(ma.Schema):
    purge = ma.fields.Boolean(
        load_default=False,
        metadata={"description": "Also purge the shared docs from the recipient's database."},
    )


class ReplicationStatusSchema(ma.Schema):
    state = ma.fields.String(
        metadata={
            "description": "From `_scheduler/docs`; `unknown` where the server has none."
            " In on-change mode the broker runs each replication itself: one whose runs go"
            " through is `idle` (CouchDB's `completed`), the next change runs it again; one"
            " whose runs fail is `crashing`, with the error and when it was recorded."
        }
    )
    docs_written = ma.fields.Integer(allow_none=True)
    doc_write_failures = ma.fields.Integer(allow_none=True)
    error = ma.fields.String(allow_none=True)
    as_of = ma.fields.String(
        allow_none=True,
        metadata={
            "format": "date-time",
            "description": "When a recorded state was read from CouchDB; none for a live one.",
        },
    )


class ReplicationSchema(ma.Schema):
    id = ma.fields.String(metadata={"description": "The `_replicator` doc id."})
    direction = ma.fields.String(validate=validate.OneOf([str(d) for d in Direction]))
    source_database = ma.fields.String(allow_none=True)
    source_server = ma.fields.String(allow_none=True, metadata={"example": "default"})
    target_database = ma.fields.String(allow_none=True)
    target_server = ma.fields.String(allow_none=True, metadata={"example": "default"})
    replication_status = ma.fields.Nested(ReplicationStatusSchema)


class OperationSchema(ma.Schema):
    name = ma.fields.String(metadata={"example": "revoke"})
    done = ma.fields.List(
        ma.fields.String(), metadata={"example": ["replication:owner-to-recipient"]}
    )


class ShareSchema(ma.Schema):
    id = ma.fields.String()
    owner = config_uuid()
    recipient = config_uuid(EXAMPLE_RECIPIENT)
    access = ma.fields.String(validate=ACCESS)
    collections = ma.fields.List(ma.fields.String(), allow_none=True)
    rules = ma.fields.List(ma.fields.Nested(RuleSchema), allow_none=True)
    status = ma.fields.String(validate=validate.OneOf([str(s) for s in Status]))
    created_at = timestamp()
    updated_at = timestamp()
    replications = ma.fields.List(ma.fields.Nested(ReplicationSchema))
    expires_at = ma.fields.String(
        allow_none=True,
        metadata={"format": "date-time", "description": "When a pending invitation expires."},
    )
    db_sharing_doc_id = ma.fields.String(allow_none=True)
    operation = ma.fields.Nested(
        OperationSchema,
        allow_none=True,
        metadata={"description": "An operation that has not finished, and its steps done."},
    )


SharePageSchema = page_of(ShareSchema, "SharePage")


class EventSchema(ma.Schema):
    at = timestamp()
    actor = ma.fields.String(metadata={"example": "user:alice"})
    action = ma.fields.String(metadata={"example": "accept"})
    outcome = ma.fields.String(metadata={"example": "ok"})
    share_id = ma.fields.String()


class EventListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(EventSchema), required=True)
