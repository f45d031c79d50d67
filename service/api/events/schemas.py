"""Schemas of the feed of share events."""

import marshmallow as ma
from marshmallow import validate

from service.api.fields import FullMatch, config_uuid, timestamp
from service.sharing.core.model import ADMIN_KINDS, KINDS

MAX_WAIT_MS = 60_000
CURSOR = r"^(now|[A-Za-z0-9_-]+)$"  # `now`, or CouchDB's sequence in base64url
NOT_A_CURSOR = "not a cursor: pass next_since or an event's cursor"
FEED_KINDS = sorted({*KINDS.values(), "left", *ADMIN_KINDS})


class EventFeedQuerySchema(ma.Schema):
    database = config_uuid()  # the events of the shares this database takes part in
    share = ma.fields.String(
        validate=validate.Length(min=1, max=64),
        metadata={"description": "Admins only: the events of one share."},
    )
    since = ma.fields.String(
        validate=[validate.Length(min=1, max=400), FullMatch(CURSOR, error=NOT_A_CURSOR)],
        metadata={
            "description": "Where to read on from: `next_since` of the last answer, or the"
            " `cursor` of an event, as given; `now` for only what comes next. From the start"
            " without it."
        },
    )
    limit = ma.fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    feed = ma.fields.String(
        load_default="normal",
        validate=validate.OneOf(["normal", "longpoll"]),
        metadata={"description": "`longpoll`: when nothing is there yet, wait for it."},
    )
    timeout = ma.fields.Integer(
        load_default=30_000,
        validate=validate.Range(min=0, max=MAX_WAIT_MS),
        metadata={"description": "How long a long poll waits, in milliseconds."},
    )


class FeedEventSchema(ma.Schema):
    id = ma.fields.String(metadata={"description": "The event's own id, stable."})
    cursor = ma.fields.String(metadata={"description": "`since` to read on after this event."})
    share_id = ma.fields.String(metadata={"description": "The share; absent for a registration."})
    database = ma.fields.String(
        metadata={
            "description": "Admins only, for an event about a registration (registered,"
            " registration removed, disputed, dispute dismissed): its Configuration UUID."
        }
    )
    kind = ma.fields.String(validate=validate.OneOf(FEED_KINDS), metadata={"example": "accepted"})
    at = timestamp()
    role = ma.fields.String(
        validate=validate.OneOf(["owner", "recipient", "admin", "broker"]),
        metadata={"description": "The actor's role in the share.", "example": "recipient"},
    )
    owner = ma.fields.String(metadata={"description": "The owner's Configuration UUID."})
    recipient = ma.fields.String(metadata={"description": "The recipient's Configuration UUID."})


class EventFeedSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(FeedEventSchema), required=True)
    next_since = ma.fields.String(
        required=True, metadata={"description": "`since` for the next call."}
    )
