"""The feed of share events: `GET /v1/events`, as JSON pages, long polls or Server-Sent
Events."""

import base64
import binascii
import json

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from service.api.auth import authenticate, caller
from service.api.context import broker
from service.api.events.schemas import NOT_A_CURSOR, EventFeedQuerySchema, EventFeedSchema
from service.api.fields import problems
from service.couch import CouchError
from service.sharing.core.errors import ForbiddenError, InvalidRequest
from service.sharing.watching.feed import Entry, Reader

blp = Blueprint(
    "events",
    __name__,
    url_prefix="/v1/events",
    description="Share events in one order for every reader, resumable: invitations,"
    " answers, changes and ends.",
)
blp.before_request(authenticate)
STREAM_SECONDS = 300  # an event stream ends after this long; the client reconnects
HEARTBEAT_SECONDS = 15
RETRY_AFTER_SECONDS = "5"


@blp.route("")
class Events(MethodView):
    @blp.arguments(EventFeedQuerySchema, location="query")
    @problems(blp, 403, 404, 422)
    @blp.response(
        200,
        EventFeedSchema,
        description="A page of events; with `Accept: text/event-stream`, a stream of them"
        " (`id` is each event's cursor, and `Last-Event-ID` resumes after it).",
    )
    def get(self, query):
        """The caller's share events, in order, from a cursor (users name their database)"""
        reader = _reader(query)
        since = _since(query.get("since"))
        feed = broker().feed
        if request.accept_mimetypes.best == "text/event-stream":
            resume = request.headers.get("Last-Event-ID")
            return _stream(reader, _since(resume) if resume else since, query["limit"])
        try:
            if query["feed"] == "longpoll":
                seconds = query["timeout"] / 1000
                entries, last = feed.wait(reader, since, query["limit"], seconds)
            else:
                entries, last = feed.page(reader, since, query["limit"])
        except CouchError as exc:
            raise _not_a_cursor(exc) from None
        return {"items": [_item(e) for e in entries], "next_since": _cursor(last)}


def _reader(query: dict) -> Reader:
    """Whose events: a user names the database they act for; an admin may name one, or a
    share, or neither for every event."""
    database, share_id = query.get("database"), query.get("share")
    who = caller()
    if share_id and not who.is_admin:
        raise ForbiddenError("only admins read a share's events here; use your database")
    if database is None and not who.is_admin:
        raise InvalidRequest("name the database you act for", "database")
    if database is not None:
        broker().policy.require_registered(who, database, "database")
    return Reader(database, share_id, admin=who.is_admin)


def _item(entry: Entry) -> dict:
    return {**entry.public(), "cursor": _cursor(entry.seq)}


def _cursor(seq: str) -> str:
    """CouchDB's sequence, opaque and URL-safe."""
    return base64.urlsafe_b64encode(str(seq).encode()).decode().rstrip("=")


def _since(cursor: str | None) -> str:
    if cursor is None:
        return "0"
    if cursor == "now":
        return "now"
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest(NOT_A_CURSOR, "since") from None


def _not_a_cursor(exc: CouchError) -> Exception:
    """CouchDB's 400 for a `since` it cannot read is the caller's cursor at fault."""
    return InvalidRequest(NOT_A_CURSOR, "since") if exc.status == 400 else exc


def _stream(reader: Reader, since: str, limit: int) -> Response:
    """Server-Sent Events: each event as it comes, a comment every 15 s to keep the line
    open, and an end after `STREAM_SECONDS` (EventSource reconnects with Last-Event-ID)."""
    feed = broker().feed
    if feed.full():
        abort(
            503,
            message="as many streams as this replica may hold are open; try again shortly",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    try:
        feed.page(reader, since, 1)  # a bad cursor is 422 before the stream starts
    except CouchError as exc:
        raise _not_a_cursor(exc) from None

    def events():
        yield "retry: 1000\n\n"
        for _ in range(STREAM_SECONDS // HEARTBEAT_SECONDS):
            nonlocal since
            entries, since = feed.wait(reader, since, limit, HEARTBEAT_SECONDS)
            if feed.stopping.is_set():
                return
            for entry in entries:
                data = json.dumps(_item(entry), separators=(",", ":"))
                yield f"id: {_cursor(entry.seq)}\nevent: {entry.event.kind}\ndata: {data}\n\n"
            if not entries:
                yield ": still here\n\n"

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(events(), mimetype="text/event-stream", headers=headers)
