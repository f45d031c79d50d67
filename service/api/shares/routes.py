"""Shares: create, read, change and revoke."""

from flask import request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from service.api.auth import require_admin_token
from service.api.context import broker
from service.api.fields import problems
from service.api.shares.schemas import (
    RevokeQuerySchema,
    ShareCreateSchema,
    SharePageSchema,
    SharePatchSchema,
    ShareQuerySchema,
    ShareSchema,
)
from service.sharing.lifecycle import UNCHANGED
from service.sharing.model import Access, Share
from service.sharing.replicator import replication_status
from service.sharing.views import describe

blp = Blueprint(
    "shares",
    __name__,
    url_prefix="/v1/shares",
    description="Shares of an owner's collections with a recipient, read-only or read-write.",
)
blp.before_request(require_admin_token)

IF_MATCH = {
    "in": "header",
    "name": "If-Match",
    "required": True,
    "schema": {"type": "string"},
    "description": "The ETag of the share as last read.",
}
ETAG_HEADER = {"ETag": {"schema": {"type": "string"}, "description": "The share's version."}}


def _view(share: Share, with_status: bool = False) -> dict:
    names = broker().store.database_names({share.owner, share.recipient})
    couch = broker().couch
    status_of = (lambda doc_id: replication_status(couch, doc_id)) if with_status else None
    return describe(share, names, status_of)


@blp.route("")
class Shares(MethodView):
    @blp.arguments(ShareQuerySchema, location="query")
    @problems(blp, 422)
    @blp.response(200, SharePageSchema)
    def get(self, query):
        """List shares, filtered by database, role and status"""
        selector = {}
        if "status" in query:
            selector["status"] = query["status"]
        if "database" in query:
            roles = ["owner", "recipient"] if query["role"] == "any" else [query["role"]]
            selector["$or"] = [{role: query["database"]} for role in roles]
        store = broker().store
        shares, next_cursor = store.list_shares(selector, query.get("cursor"), query["limit"])
        names = store.database_names({u for s in shares for u in (s.owner, s.recipient)})
        return {"items": [describe(s, names) for s in shares], "next_cursor": next_cursor}

    @blp.arguments(ShareCreateSchema)
    @problems(blp, 400, 404, 409, 422, 502)
    @blp.response(201, ShareSchema, headers=ETAG_HEADER)
    def post(self, body):
        """Create a share and start replicating at once"""
        share = broker().shares.create(
            body["owner"], body["recipient"], Access(body["access"]), body["collections"]
        )
        location = url_for("shares.ShareById", share_id=share.id)
        return _view(share), 201, {"Location": location, "ETag": share.etag}


@blp.route("/<share_id>")
class ShareById(MethodView):
    @problems(blp, 404, 502)
    @blp.response(200, ShareSchema, headers=ETAG_HEADER)
    def get(self, share_id):
        """Read a share with the live status of its replications"""
        share = broker().store.get_share(share_id)
        return _view(share, with_status=True), {"ETag": share.etag}

    @blp.arguments(SharePatchSchema)
    @blp.doc(parameters=[IF_MATCH])
    @problems(blp, 400, 404, 409, 412, 422, 428, 502)
    @blp.response(200, ShareSchema, headers=ETAG_HEADER)
    def patch(self, body, share_id):
        """Change a share's access or collections"""
        etag = request.headers.get("If-Match")
        if not etag:
            abort(428, message="If-Match is required: send the ETag of the share as last read")
        share = broker().shares.patch(
            share_id,
            etag,
            Access(body["access"]) if "access" in body else None,
            body.get("collections", UNCHANGED),
        )
        return _view(share), {"ETag": share.etag}

    @blp.arguments(RevokeQuerySchema, location="query")
    @problems(blp, 404, 422, 502)
    @blp.response(200, ShareSchema)
    def delete(self, query, share_id):
        """Revoke a share; call again to finish a revoke that stopped half-way"""
        return _view(broker().shares.revoke(share_id, purge=query["purge"]))
