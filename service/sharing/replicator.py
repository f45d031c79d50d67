"""The `_replicator` docs of a share, and their live status from `_scheduler/docs`."""

import re
from dataclasses import dataclass
from urllib.parse import quote

from service.couch import CouchClient, NotFound
from service.sharing.model import Direction, Share

REPLICATOR_DB = "_replicator"
REPLICATOR_PREFIX = "sharing-broker-"


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
    source_db: str,
    target_db: str,
    selector: dict,
    endpoint: Endpoint,
    broker: str,
) -> dict:
    """The body of one direction's replicator doc, labelled as `broker`'s."""
    return {
        "_id": replicator_doc_id(share.id, direction),
        "source": endpoint.database(source_db),
        "target": endpoint.database(target_db),
        "continuous": True,
        "create_target": False,
        "selector": selector,
        "sharing_broker": {"broker": broker, "share_id": share.id, "direction": str(direction)},
    }


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
    """Read one replication's state. Servers without `_scheduler` give `unknown`."""
    try:
        body = couch.get("_scheduler", "docs", REPLICATOR_DB, doc_id)
    except NotFound:
        return ReplicationStatus(state="unknown")
    info = body.get("info") or {}
    return ReplicationStatus(
        state=body.get("state") or "unknown",
        docs_written=info.get("docs_written"),
        doc_write_failures=info.get("doc_write_failures"),
        error=redacted(info.get("error")),
    )


def redacted(error: object) -> str | None:
    """An error text with any `user:password@` in URLs taken out."""
    return re.sub(r"//[^/\s@]*@", "//", error) if isinstance(error, str) else None
