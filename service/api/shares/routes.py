"""Shares: invite, accept or decline, read, change and revoke."""

from dataclasses import asdict

from flask import jsonify, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from service.api import idempotency
from service.api.auth import authenticate, caller
from service.api.context import broker
from service.api.fields import problems
from service.api.shares.schemas import (
    DryRunQuerySchema,
    EventListSchema,
    PreviewSchema,
    RevokeQuerySchema,
    ShareCreateSchema,
    SharePageSchema,
    SharePatchSchema,
    ShareQuerySchema,
    ShareSchema,
)
from service.sharing.core.errors import ForbiddenError, InvalidRequest
from service.sharing.core.model import Access, Database, Selection, Share, Status
from service.sharing.core.store import status_selector
from service.sharing.crossing.preview import Preview
from service.sharing.lifecycle.change import UNCHANGED
from service.sharing.lifecycle.views import describe, replication_ids
from service.sharing.placing.replicator import ReplicationStatus, replication_status
from service.sharing.watching.states import STATES_DOC_ID, failing_runs, recorded_states

blp = Blueprint(
    "shares",
    __name__,
    url_prefix="/v1/shares",
    description="Shares of an owner's collections with a recipient, read-only or read-write.",
)
blp.before_request(authenticate)
blp.before_request(idempotency.begin)
blp.after_request(idempotency.finish)

UNKNOWN = ReplicationStatus(state="unknown")
IF_MATCH = {
    "in": "header",
    "name": "If-Match",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
    "description": "The ETag of the share as last read.",
}
ETAG_HEADER = {"ETag": {"schema": {"type": "string"}, "description": "The share's version."}}


def _view(
    share: Share,
    visible: set[str],
    with_status: bool = False,
    databases: dict[str, Database] | None = None,
) -> dict:
    """The share as `visible` may see it: database names and servers only of their own
    databases.

    `databases` are the parties' registrations when the operation has just read them.
    """
    if databases is None:
        databases = broker().store.get_databases({share.owner, share.recipient})
    status_of = None
    if with_status and share.owner in databases:  # replications run on the owner's server
        couch = broker().registry.site(databases[share.owner]).couch
        status_of = lambda doc_id: replication_status(couch, doc_id)  # noqa: E731
        if broker().max_runs is not None:  # on-change mode: the runs say what fails
            recorded = broker().store.get_doc(STATES_DOC_ID)
            status_of = failing_runs(status_of, recorded, share.updated_at)
    return describe(share, {u: d for u, d in databases.items() if u in visible}, status_of)


def _visible(share: Share, roles: set[str]) -> set[str]:
    """The Configuration UUIDs whose database names the caller may see."""
    ends = (("owner", share.owner), ("recipient", share.recipient))
    return {config_uuid for role, config_uuid in ends if role in roles}


def _share_for(share_id: str, *allowed_roles: str) -> tuple[Share, set[str]]:
    """The share and the caller's roles in it; strangers get 404."""
    share = broker().store.get_share(share_id)
    return share, broker().policy.require_party(caller(), share, *allowed_roles)


@blp.route("")
class Shares(MethodView):
    @blp.arguments(ShareQuerySchema, location="query")
    @problems(blp, 403, 404, 422)
    @blp.response(200, SharePageSchema)
    def get(self, query):
        """List shares, filtered by database, role and status"""
        database = query.get("database")
        if database is None and not caller().is_admin:
            raise InvalidRequest("name the database you act for", "database")
        conditions = []
        if database is not None:
            broker().policy.require_registered(caller(), database, "database")
            roles = ["owner", "recipient"] if query["role"] == "any" else [query["role"]]
            conditions.append({"$or": [{role: database} for role in roles]})
        if "status" in query:
            conditions.append(status_selector(Status(query["status"])))
        store = broker().store
        shares, next_cursor = store.list_shares(conditions, query.get("cursor"), query["limit"])
        everyone = {u for s in shares for u in (s.owner, s.recipient)}
        states_doc = STATES_DOC_ID if query["with_status"] else None
        visible = everyone if caller().is_admin else {database}
        databases, recorded = store.get_databases_and(everyone, states_doc)
        status_of = None
        if query["with_status"]:
            changed_at, couches = {}, {}
            for share in (s for s in shares if s.owner in databases):
                home = broker().registry.site(databases[share.owner]).couch
                for doc_id in replication_ids(share):
                    changed_at[doc_id], couches[doc_id] = share.updated_at, home
            states = recorded_states(couches, recorded, changed_at)
            status_of = lambda doc_id: states.get(doc_id, UNKNOWN)  # noqa: E731
        shown = {u: d for u, d in databases.items() if u in visible}
        items = [describe(s, shown, status_of) for s in shares]
        return {"items": items, "next_cursor": next_cursor}

    @blp.arguments(ShareCreateSchema)
    @blp.arguments(DryRunQuerySchema, location="query")
    @problems(blp, 400, 403, 404, 409, 422, 502)
    @blp.response(201, ShareSchema, headers=ETAG_HEADER)
    @blp.alt_response(200, schema=PreviewSchema, description="With dry_run: what would go.")
    @blp.doc(parameters=[idempotency.DOC])
    def post(self, body, query):
        """Invite a recipient to a share, or with auto_accept (admins) share at once"""
        who = caller()
        if not who.is_admin:
            if body["auto_accept"]:
                raise ForbiddenError("only admins may skip the recipient's consent", "auto_accept")
            broker().policy.require_registered(who, body["owner"], "owner")
        access = Access(body["access"])
        selection = Selection(body["collections"], body["rules"])
        if query["dry_run"]:
            found = broker().shares.preview_new(body["owner"], body["recipient"], access, selection)
            return _preview(found)
        broker().policy.require_room(who, body["owner"])
        share, databases = broker().shares.create(
            body["owner"],
            body["recipient"],
            access,
            selection,
            actor=who.actor,
            accepted=who.is_admin and body["auto_accept"] is not False,
        )
        location = url_for("shares.ShareById", share_id=share.id)
        visible = {share.owner, share.recipient} if who.is_admin else {share.owner}
        return (
            _view(share, visible, databases=databases),
            201,
            {"Location": location, "ETag": share.etag},
        )


@blp.route("/<share_id>")
class ShareById(MethodView):
    @problems(blp, 404, 502)
    @blp.response(200, ShareSchema, headers=ETAG_HEADER)
    def get(self, share_id):
        """Read a share with the live status of its replications"""
        share, roles = _share_for(share_id)
        return _view(share, _visible(share, roles), with_status=True), {"ETag": share.etag}

    @blp.arguments(SharePatchSchema)
    @blp.arguments(DryRunQuerySchema, location="query")
    @blp.doc(parameters=[IF_MATCH, idempotency.DOC])
    @problems(blp, 400, 403, 404, 409, 412, 422, 428, 502)
    @blp.response(200, ShareSchema, headers=ETAG_HEADER)
    def patch(self, body, query, share_id):
        """Change a share's access, collections or rules (the owner); dry_run previews it"""
        share, roles = _share_for(share_id, "owner")
        access = Access(body["access"]) if "access" in body else None
        collections = body.get("collections", UNCHANGED)
        rules = body.get("rules", UNCHANGED)
        if query["dry_run"]:
            return _preview(broker().shares.preview(share, access, collections, rules))
        if_match = request.headers.get("If-Match")
        if not if_match:
            abort(428, message="If-Match is required: send the ETag of the share as last read")
        # RFC 9110: a list of ETags, or `*` for whatever the share is now.
        listed = {tag.strip() for tag in if_match.split(",")}
        etag = share.etag if "*" in listed or share.etag in listed else if_match
        share = broker().shares.patch(share, etag, access, collections, rules, actor=caller().actor)
        return _view(share, _visible(share, roles)), {"ETag": share.etag}

    @blp.arguments(RevokeQuerySchema, location="query")
    @problems(blp, 404, 409, 422, 502)
    @blp.response(200, ShareSchema)
    @blp.doc(parameters=[idempotency.DOC])
    def delete(self, query, share_id):
        """Revoke a share (the owner) or leave it (the recipient)"""
        share, roles = _share_for(share_id)
        role = "admin" if caller().is_admin else "owner" if "owner" in roles else "recipient"
        share, databases = broker().shares.revoke(
            share, purge=query["purge"], actor=caller().actor, role=role
        )
        return _view(share, _visible(share, roles), databases=databases)


def _act(share_id: str, role: str, action) -> tuple[dict, dict]:
    """Run `action` on the share for a party in `role` (or an admin); answer with its ETag."""
    share, roles = _share_for(share_id, role)
    share = action(share, actor=caller().actor)
    return _view(share, _visible(share, roles)), {"ETag": share.etag}


@blp.route("/<share_id>/accept")
class AcceptShare(MethodView):
    @blp.doc(parameters=[idempotency.DOC])
    @problems(blp, 403, 404, 409, 502)
    @blp.response(200, ShareSchema, headers=ETAG_HEADER)
    def post(self, share_id):
        """Accept an invitation and start replicating (the recipient)"""
        share, roles = _share_for(share_id, "recipient")
        broker().policy.require_room_to_accept(caller(), share.recipient)
        share, databases = broker().shares.accept(share, actor=caller().actor)
        return _view(share, _visible(share, roles), databases=databases), {"ETag": share.etag}


@blp.route("/<share_id>/decline")
class DeclineShare(MethodView):
    @blp.doc(parameters=[idempotency.DOC])
    @problems(blp, 403, 404, 409, 502)
    @blp.response(200, ShareSchema, headers=ETAG_HEADER)
    def post(self, share_id):
        """Decline an invitation (the recipient)"""
        return _act(share_id, "recipient", broker().shares.decline)


@blp.route("/<share_id>/rotate-credentials")
class RotateCredentials(MethodView):
    @blp.doc(parameters=[idempotency.DOC])
    @problems(blp, 403, 404, 409, 502)
    @blp.response(200, ShareSchema, headers=ETAG_HEADER)
    def post(self, share_id):
        """Give the share's CouchDB user a new password (admins and the owner)"""
        return _act(share_id, "owner", broker().shares.rotate)


@blp.route("/<share_id>/preview")
class SharePreview(MethodView):
    @problems(blp, 403, 404, 409, 502)
    @blp.response(200, PreviewSchema)
    def get(self, share_id):
        """What the share carries out of the owner's database: counts and first ids (the owner)"""
        share, _roles = _share_for(share_id, "owner")
        return _preview_body(broker().shares.preview(share))


def _preview_body(found: Preview) -> dict:
    return {"total": found.total, "counts": found.counts, "first_ids": found.first_ids}


def _preview(found: Preview):
    """A dry run's answer: 200 with the preview, past the operation's own response schema."""
    return jsonify(PreviewSchema().dump(_preview_body(found)))


@blp.route("/<share_id>/events")
class ShareEvents(MethodView):
    @problems(blp, 404)
    @blp.response(200, EventListSchema)
    def get(self, share_id):
        """Read a share's audit trail"""
        share, _roles = _share_for(share_id)
        return {"items": [asdict(e) for e in broker().shares.events(share.id)]}
