"""Schemas of a reconcile report."""

import marshmallow as ma

FINDING = ma.fields.Dict(
    keys=ma.fields.String(),
    metadata={"example": {"kind": "orphan replicator doc", "doc_id": "sharing-broker-…"}},
)


class ReconcileReportSchema(ma.Schema):
    found = ma.fields.List(FINDING, metadata={"description": "Drift and unfinished work seen."})
    repaired = ma.fields.List(FINDING, metadata={"description": "What was done about it."})
    errors = ma.fields.List(FINDING, metadata={"description": "What could not be repaired now."})
    skipped = ma.fields.String(
        allow_none=True, metadata={"description": "Why this pass did nothing, if it did not run."}
    )
