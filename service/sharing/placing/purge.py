"""Purging what a revoked share left in the recipient's database, and nothing else.

A purge, unlike a delete, leaves no tombstone that could replicate back to the owner.
Only the owner's docs are purged: collections and items whose `data.config_uuid` is the
owner's, and the pictures of those items. The recipient's own docs stay, even inside a
shared collection.
"""

from collections.abc import Iterator

from service.couch import CouchClient, NotFound
from service.sharing.crossing.mango import matches
from service.sharing.crossing.scan import docs_with_prefix
from service.sharing.crossing.selectors import SHARED_PREFIXES

PURGE_BATCH = 100  # CouchDB's default purge limit per request


def purge_doc(couch: CouchClient, db: str, doc_id: str) -> int:
    """Purge every leaf of one doc, tombstones too; return how many docs were purged.

    A tombstone counts: replication may have carried the owner's deletion of the doc
    just before it stopped.
    """
    try:
        rows = couch.get(db, doc_id, params={"open_revs": "all"})
    except NotFound:
        return 0
    leaves = [row["ok"]["_rev"] for row in rows if "ok" in row]
    return _purge_revisions(couch, db, {doc_id: leaves} if leaves else {})


def purge_shared_docs(couch: CouchClient, db: str, owner: str, selector: dict) -> int:
    """Purge from `db` the owner's docs that `selector` carries; return how many.

    A database that is gone holds nothing to purge.
    """
    try:
        docs = list(_owner_docs(couch, db, owner, selector))
    except NotFound:
        return 0
    return _purge(couch, db, docs)


def _owner_docs(couch: CouchClient, db: str, owner: str, selector: dict) -> Iterator[dict]:
    item_ids: set[str] = set()

    def shared(kind: str) -> Iterator[dict]:
        return (
            d for d in docs_with_prefix(couch, db, SHARED_PREFIXES[kind]) if matches(selector, d)
        )

    for kind in ("collection", "item"):
        for doc in shared(kind):
            if (doc.get("data") or {}).get("config_uuid") == owner:
                if kind == "item":
                    item_ids.add(doc["_id"].removeprefix(SHARED_PREFIXES["item"]))
                yield doc
    for doc in shared("item_image"):
        if (doc.get("data") or {}).get("item_id") in item_ids:
            yield doc
    for doc in shared("image"):
        linked = (doc.get("data") or {}).get("_item_ids") or []
        if linked and set(linked) <= item_ids:
            yield doc


def _purge(couch: CouchClient, db: str, docs: list[dict]) -> int:
    revs = {d["_id"]: [d["_rev"], *d.get("_conflicts", [])] for d in docs}
    return _purge_revisions(couch, db, revs)


def _purge_revisions(couch: CouchClient, db: str, revs: dict[str, list[str]]) -> int:
    """Purge these revisions of these docs, in CouchDB's batches; return how many docs."""
    ids = list(revs)
    for start in range(0, len(ids), PURGE_BATCH):
        batch = {i: revs[i] for i in ids[start : start + PURGE_BATCH]}
        couch.post(db, "_purge", json=batch)
    return len(ids)
