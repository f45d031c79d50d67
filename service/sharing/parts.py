"""The docs a share places in CouchDB, and making them match what the share wants.

A share is made of up to three parts, each one doc in one database:
- `replication:owner-to-recipient` and `replication:recipient-to-owner` in `_replicator`;
- `db_sharing` in the owner's database (read-write only).

`converge` removes the parts that should not exist, then writes the ones that should, in an
order that loses nothing and leaks nothing back: the recipient->owner replication stops
before `db_sharing` goes, which goes before the owner->recipient replication stops.
"""

from collections.abc import Callable
from dataclasses import dataclass

from service.couch import CouchClient, DocumentConflict, NotFound
from service.sharing.model import Access, Direction, Share, now_epoch_ms
from service.sharing.replicator import REPLICATOR_DB, Endpoint, replicator_doc
from service.sharing.selectors import share_selector

O2R = f"replication:{Direction.OWNER_TO_RECIPIENT}"
R2O = f"replication:{Direction.RECIPIENT_TO_OWNER}"
DB_SHARING = "db_sharing"
REMOVAL_ORDER = (R2O, DB_SHARING, O2R)
WRITE_ORDER = (DB_SHARING, O2R, R2O)
# Fields that may differ between a stored part and a wanted one without a rewrite.
_VOLATILE = frozenset({"_id", "_rev", "created_at", "updated_at"})


@dataclass(frozen=True)
class Part:
    """One doc of a share: where it lives and, when wanted, its body."""

    db: str
    doc_id: str
    body: dict | None = None


@dataclass(frozen=True)
class Target:
    """The state a share is brought to: `access=None` means no parts at all."""

    access: Access | None
    collections: list[str] | None
    owner_db: str
    recipient_db: str
    reverse_collections: list[str] | None = None


def wanted_parts(share: Share, target: Target, endpoint: Endpoint, broker: str) -> dict[str, Part]:
    """Every part name with where it lives, and a body for those the target wants.

    Bodies are labelled with `broker` (its state database), so each broker recognises its own.
    """
    o2r = replicator_doc(
        share,
        Direction.OWNER_TO_RECIPIENT,
        target.owner_db,
        target.recipient_db,
        share_selector(
            share.owner,
            share.recipient,
            target.access or Access.READ,
            target.collections,
            Direction.OWNER_TO_RECIPIENT,
        ),
        endpoint,
        broker,
    )
    r2o = replicator_doc(
        share,
        Direction.RECIPIENT_TO_OWNER,
        target.recipient_db,
        target.owner_db,
        share_selector(
            share.owner,
            share.recipient,
            Access.READ_WRITE,
            target.reverse_collections,
            Direction.RECIPIENT_TO_OWNER,
        ),
        endpoint,
        broker,
    )
    stamp = now_epoch_ms()
    db_sharing = {
        "_id": share.db_sharing_doc_id,
        "type": "db_sharing",
        "data": {"permissions": ["read", "write"]},
        "created_at": stamp,
        "updated_at": stamp,
        # Marks the doc as the broker's, so reconcile may remove it when no share needs it.
        "sharing_broker": {"broker": broker, "share_id": share.id},
    }
    live = target.access is not None
    two_way = target.access is Access.READ_WRITE
    return {
        O2R: Part(REPLICATOR_DB, o2r["_id"], o2r if live else None),
        DB_SHARING: Part(target.owner_db, db_sharing["_id"], db_sharing if two_way else None),
        R2O: Part(REPLICATOR_DB, r2o["_id"], r2o if two_way else None),
    }


def converge(
    couch: CouchClient, parts: dict[str, Part], done: list[str], record: Callable[[str], None]
) -> None:
    """Remove unwanted parts, then write wanted ones; skip names in `done`, record each."""
    steps = [n for n in REMOVAL_ORDER if parts[n].body is None]
    steps += [n for n in WRITE_ORDER if parts[n].body is not None]
    for name in steps:
        if name in done:
            continue
        part = parts[name]
        if part.body is None:
            ensure_absent(couch, part.db, part.doc_id)
        else:
            ensure_present(couch, part.db, part.body)
        record(name)


def ensure_present(couch: CouchClient, db: str, body: dict) -> None:
    """Write `body` unless a doc with the same content is there already.

    A new doc is written at once; only a conflict costs a read.
    """
    doc_id = body["_id"]
    try:
        couch.put(db, doc_id, json=body)
        return
    except DocumentConflict:
        pass
    for _ in range(3):
        try:
            current = couch.get(db, doc_id)
        except NotFound:
            current = None
        if current is not None and not _differs(current, body):
            return
        doc = dict(body) if current is None else {**body, "_rev": current["_rev"]}
        if current is not None and "created_at" in current:
            doc["created_at"] = current["created_at"]
        try:
            couch.put(db, doc_id, json=doc)
            return
        except DocumentConflict:
            continue  # changed meanwhile: read again
    raise DocumentConflict(409, "conflict", "kept changing", f"PUT /{db}/{doc_id}")


def ensure_current(couch: CouchClient, db: str, body: dict) -> bool:
    """Like `ensure_present`, and also restart a replication CouchDB marked failed.

    Return whether anything was written.
    """
    try:
        current = couch.get(db, body["_id"])
    except NotFound:
        current = None
    failed = current is not None and current.get("_replication_state") == "failed"
    if current is not None and not failed and not _differs(current, body):
        return False
    if current is None:
        ensure_present(couch, db, body)
    else:  # a new revision without the `_replication_*` fields restarts it
        couch.put(db, body["_id"], json={**body, "_rev": current["_rev"]})
    return True


def ensure_absent(couch: CouchClient, db: str, doc_id: str) -> None:
    """Delete the doc if it exists."""
    for _ in range(3):
        try:
            current = couch.get(db, doc_id)
            couch.delete(db, doc_id, params={"rev": current["_rev"]})
            return
        except NotFound:
            return
        except DocumentConflict:
            continue
    raise DocumentConflict(409, "conflict", "kept changing", f"DELETE /{db}/{doc_id}")


def _differs(current: dict, wanted: dict) -> bool:
    return any(current.get(k) != v for k, v in wanted.items() if k not in _VOLATILE)
