"""`Idempotency-Key` on POST, PATCH and DELETE: the same key and request get the first answer.

The key is scoped to the caller (kind, server and name). The same key with a different
request gets 422; while the first request runs, a repeat gets 409. A 5xx is not kept, so the
request may be retried; nor is an answer the state database would not take. A key is kept
for 24 hours (`store.KEYS_KEPT_HOURS`): after that it is free again, and reconcile removes
its record. A key left started by a request that died is free after ten minutes.
"""

import hashlib
import json
import logging
import re
from contextlib import suppress

from flask import Response, g, request

from service.api.auth import caller
from service.api.context import broker
from service.api.problems import problem
from service.couch import CouchError, CouchUnavailable

HEADER = "Idempotency-Key"
KEY_PATTERN = "^[!-~]{1,200}$"  # printable ASCII, no spaces
KEY = re.compile(KEY_PATTERN)
REPLAYED_HEADERS = ("ETag", "Location")
log = logging.getLogger(__name__)
DOC = {
    "in": "header",
    "name": HEADER,
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": KEY_PATTERN},
    "description": "Send the same key to retry safely: the first response comes back."
    " A key sent again with a different request gets 422.",
}


def begin():
    """`before_request`: replay, refuse, or claim the key for this request."""
    key = request.headers.get(HEADER)
    if request.method not in ("POST", "PATCH", "DELETE") or key is None:
        return None
    if not KEY.fullmatch(key):
        return problem(
            400, f"{HEADER} must be 1 to 200 printable characters", {HEADER: ["invalid"]}
        )
    key_id = "idempotency:" + _digest(*caller().scope, key)
    fingerprint = _digest(request.method, request.full_path, _canonical_body())
    found = broker().store.claim_key(key_id, fingerprint)
    if found is None:
        g.idempotency_key_id = key_id
        return None
    if found["fingerprint"] != fingerprint:
        return problem(
            422,
            f"this {HEADER} was used for a different request",
            {HEADER: ["reused with a different request"]},
        )
    if found["state"] != "done":
        return problem(
            409,
            f"a request with this {HEADER} is still running; retry shortly",
            headers={"Retry-After": "1"},
        )
    stored = found["response"]
    replay = Response(stored["body"], status=stored["status"], mimetype=stored["mimetype"])
    replay.headers.update(stored["headers"])
    replay.headers["Idempotent-Replayed"] = "true"
    return replay


def finish(response: Response) -> Response:
    """`after_request`: keep the answer to a claimed key, or let a failed one go."""
    key_id = g.pop("idempotency_key_id", None)
    if key_id is None:
        return response
    if response.status_code >= 500:
        broker().store.drop_key(key_id)
        return response
    stored = {
        "status": response.status_code,
        "mimetype": response.mimetype,
        "body": response.get_data(as_text=True),
        "headers": {h: response.headers[h] for h in REPLAYED_HEADERS if h in response.headers},
    }
    try:
        broker().store.finish_key(key_id, stored)
    except (CouchError, CouchUnavailable) as error:  # the work is done: its answer still goes
        log.warning("the answer to an %s was not kept, so the key is let go: %s", HEADER, error)
        with suppress(CouchError, CouchUnavailable):
            broker().store.drop_key(key_id)
    return response


def _canonical_body() -> str:
    """The body, as JSON with sorted keys and no spacing when it parses: the same request
    is the same whatever order its keys came in."""
    body = request.get_data(as_text=True)
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return body


def _digest(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()
