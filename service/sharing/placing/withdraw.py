"""Withdrawing the owner's docs from a recipient's database, in a way that reaches devices.

A purge does not replicate. The recipient's phones keep a purged doc, and one whose push
checkpoint lags its pull pushes it back. So the broker deletes instead, and marks each
tombstone with the share that ended (`ENDED_MARK`): the tombstone reaches every device on
its next sync, and no selector or guard lets it travel to the owner's database.

Only the owner's docs go: collections and items whose `data.config_uuid` is the owner's,
and the pictures of those items. The recipient's own docs stay, even inside a shared
collection.
"""

from collections.abc import Iterator

from service.couch import CouchClient, NotFound
from service.sharing.crossing.mango import matches
from service.sharing.crossing.scan import docs_with_prefix
from service.sharing.crossing.selectors import ENDED_MARK, SHARED_PREFIXES

BATCH = 100
ROUNDS = 3  # a device may push a new revision of a doc between our read and our write


def withdraw_doc(couch: CouchClient, db: str, doc_id: str, share_id: str) -> int:
    """Delete every live leaf of one doc with a marked tombstone; return how many docs."""
    try:
        leaves = _live_leaves(couch, db, [doc_id])
    except NotFound:
        return 0
    return _withdraw(couch, db, leaves, share_id)


def withdraw_shared_docs(
    couch: CouchClient, db: str, owner: str, selector: dict, share_id: str
) -> int:
    """Delete from `db` the owner's docs that `selector` carries; return how many.

    A database that is gone holds nothing to withdraw.
    """
    try:
        docs = list(_owner_docs(couch, db, owner, selector))
    except NotFound:
        return 0
    leaves = {d["_id"]: [d["_rev"], *d.get("_conflicts", [])] for d in docs}
    return _withdraw(couch, db, leaves, share_id)


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


def _withdraw(couch: CouchClient, db: str, leaves: dict[str, list[str]], share_id: str) -> int:
    """Write a marked tombstone on each of these leaves, in batches; a doc that moved
    meanwhile is read again and its new leaves deleted, a few rounds at most."""
    withdrawn = set(leaves)
    for _ in range(ROUNDS):
        moved = []
        ids = list(leaves)
        for start in range(0, len(ids), BATCH):
            tombstones = [
                {"_id": doc_id, "_rev": rev, "_deleted": True, ENDED_MARK: share_id}
                for doc_id in ids[start : start + BATCH]
                for rev in leaves[doc_id]
            ]
            results = couch.post(db, "_bulk_docs", json={"docs": tombstones})
            moved += [r["id"] for r in results if r.get("error") == "conflict"]
        if not moved:
            break
        leaves = _live_leaves(couch, db, sorted(set(moved)))
    return len(withdrawn)


def _live_leaves(couch: CouchClient, db: str, doc_ids: list[str]) -> dict[str, list[str]]:
    """Doc id -> the revisions of its live leaves, for the docs that have any."""
    found = {}
    for doc_id in doc_ids:
        rows = couch.get(db, doc_id, params={"open_revs": "all"})
        revs = [row["ok"]["_rev"] for row in rows if "ok" in row and not row["ok"].get("_deleted")]
        if revs:
            found[doc_id] = revs
    return found
