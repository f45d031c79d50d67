"""Schemas of webhook endpoints."""

import marshmallow as ma
from marshmallow import validate

from service.api.events.schemas import FEED_KINDS
from service.api.fields import timestamp

URL = validate.URL(schemes={"http", "https"}, require_tld=False)


class WebhookCreateSchema(ma.Schema):
    url = ma.fields.String(
        required=True,
        validate=[validate.Length(max=2000), URL],
        metadata={
            "example": "https://backend.example/hooks/sharing",
            "format": "uri",
            "pattern": "^https?://[^/?#\\s]+",
        },
    )
    kinds = ma.fields.List(
        ma.fields.String(validate=validate.OneOf(FEED_KINDS)),
        allow_none=True,
        validate=validate.Length(min=1, max=len(FEED_KINDS)),
        metadata={"description": "The kinds of event to send; omitted or null for all."},
    )


class WebhookSchema(ma.Schema):
    id = ma.fields.String()
    url = ma.fields.String()
    kinds = ma.fields.List(ma.fields.String(), allow_none=True)
    created_at = timestamp()
    state = ma.fields.String(
        validate=validate.OneOf(["active", "paused"]),
        metadata={"description": "`paused` after failing again and again, until resumed."},
    )
    failures = ma.fields.Integer(metadata={"description": "Failed deliveries in a row."})
    next_attempt_at = ma.fields.String(allow_none=True, metadata={"format": "date-time"})
    last_error = ma.fields.String(
        allow_none=True, metadata={"example": "answered 503", "description": "In a few words."}
    )
    last_delivered_at = ma.fields.String(allow_none=True, metadata={"format": "date-time"})


class WebhookCreatedSchema(WebhookSchema):
    secret = ma.fields.String(
        metadata={
            "description": "The signing secret (Standard Webhooks' `whsec_` form). Shown"
            " this once: keep it where the receiver verifies signatures.",
            "example": "whsec_<base64 of 32 bytes>",
        }
    )


class WebhookListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(WebhookSchema), required=True)
