"""The `_replicator` docs of a share, and their live status from `_scheduler/docs`.

Both of a share's replications run on the owner's server, whichever server the recipient's
database is on: owner to recipient is a push, recipient to owner a pull. So one scheduler
reports a share's status and one `_replicator` holds its docs; the owner's server must
reach the recipient's, and never the other way round. The owner is the one who starts a
share, and the data leaves from there.

In on-change mode a doc is `held`: it says what to run, and the broker runs it itself, as
a transient replication (`POST /_replicate`, see `transient_body`). CouchDB's replicator
leaves a doc in the `completed` state alone: it neither runs it nor writes a run's end
into it. On a cluster that write went through one node's copy of the doc, beside a newer
rewrite that copy had not seen, and left siblings.
"""

import re
import time
from dataclasses import dataclass
from urllib.parse import quote

from service.couch import CouchClient, CouchError, CouchUnavailable, NotFound
from service.sharing.core.model import Direction, Share

REPLICATOR_DB = "_replicator"
REPLICATOR_PREFIX = "sharing-broker-"
SCHEDULER_PAGE = 500  # `_scheduler/docs` rows a request
SCHEDULER_RETRY_SECONDS = 0.2
RUNNING = "running"
HELD = {"_replication_state": "completed"}
# A one-shot run that ended well, as the broker calls it: CouchDB's `completed` reads as
# if the share were over, and in on-change mode the next change runs it again.
IDLE = "idle"


def replicator_doc_id(share_id: str, direction: Direction) -> str:
    """Deterministic, so writing the same share again is idempotent."""
    return f"{REPLICATOR_PREFIX}{share_id}-{direction}"


@dataclass(frozen=True)
class Endpoint:
    """How CouchDB's replicator reaches the databases, and as whom."""

    base_url: str
    username: str
    password: str

    def database(self, name: str) -> dict:
        return {
            "url": f"{self.base_url}/{quote(name, safe='')}",
            "auth": {"basic": {"username": self.username, "password": self.password}},
        }


def replicator_doc(
    share: Share,
    direction: Direction,
    source: tuple[Endpoint, str],
    target: tuple[Endpoint, str],
    selector: dict,
    broker: str,
    continuous: bool = True,
) -> dict:
    """The body of one direction's replicator doc, labelled as `broker`'s; `source` and
    `target` are each a server's endpoint and a database on it. A doc that is not
    `continuous` is held: the broker runs it itself, as often as its source changes. Each
    run has the doc's replication id, and so its checkpoint."""
    return {
        "_id": replicator_doc_id(share.id, direction),
        "source": source[0].database(source[1]),
        "target": target[0].database(target[1]),
        "continuous": continuous,
        "create_target": False,
        "selector": selector,
        "sharing_broker": {"broker": broker, "share_id": share.id, "direction": str(direction)},
        **({} if continuous else HELD),
    }


def is_held(doc: dict) -> bool:
    """Whether a replicator doc is one the broker runs itself, as CouchDB leaves it."""
    return not doc.get("continuous") and all(doc.get(k) == v for k, v in HELD.items())


def transient_body(doc: dict) -> dict:
    """The `POST /_replicate` body that runs a held doc once. It has the doc's replication
    id (its ends and its selector), so a run goes on from the last one's checkpoint."""
    wanted = ("source", "target", "selector", "create_target")
    return {**{k: doc[k] for k in wanted if k in doc}, "continuous": False}


@dataclass(frozen=True)
class ReplicationStatus:
    """What `_scheduler/docs` says of one replication; `unknown` where it says nothing.

    `as_of` is when a recorded state was read; a live one has none."""

    state: str
    docs_written: int | None = None
    doc_write_failures: int | None = None
    error: str | None = None
    as_of: str | None = None


def replication_status(couch: CouchClient, doc_id: str) -> ReplicationStatus:
    """Read one replication's state. Servers without `_scheduler` give `unknown`.

    CouchDB 3.5 sometimes answers 500 (`function_clause`) while a one-shot run ends: that
    is read once more, and then the state is `unknown` rather than the request failing."""
    for attempt in range(2):
        try:
            body = couch.get("_scheduler", "docs", REPLICATOR_DB, doc_id)
            break
        except NotFound:
            return ReplicationStatus(state="unknown")
        except CouchUnavailable as exc:
            if exc.status != 500:
                raise
            if attempt:
                return ReplicationStatus(state="unknown")
            time.sleep(SCHEDULER_RETRY_SECONDS)
    info = body.get("info") or {}
    state = body.get("state") or "unknown"
    return ReplicationStatus(
        state=IDLE if state == "completed" else state,
        docs_written=info.get("docs_written"),
        doc_write_failures=info.get("doc_write_failures"),
        error=redacted(info.get("error")),
    )


def redacted(error: object) -> str | None:
    """An error text with any `user:password@` in URLs taken out."""
    return re.sub(r"//[^/\s@]*@", "//", error) if isinstance(error, str) else None


def scheduler_states(couch: CouchClient, states: tuple[str, ...]) -> dict[str, dict] | None:
    """Doc id -> {state, error} of the broker's replications in one of `states`, from
    `_scheduler/docs` (a request per 500); None on a server without `_scheduler`."""
    params = {"states": ",".join(states), "limit": str(SCHEDULER_PAGE)}
    found, skip = {}, 0
    while True:
        try:
            page = couch.get(
                "_scheduler", "docs", REPLICATOR_DB, params={**params, "skip": str(skip)}
            )
        except CouchError as exc:
            if exc.status in (400, 404):
                return None
            raise
        docs = page.get("docs") or []
        for doc in docs:
            if str(doc.get("doc_id", "")).startswith(REPLICATOR_PREFIX):
                error = redacted((doc.get("info") or {}).get("error"))
                found[doc["doc_id"]] = {"state": doc.get("state"), "error": error}
        if len(docs) < SCHEDULER_PAGE:
            return found
        skip += SCHEDULER_PAGE
