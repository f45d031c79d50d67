"""Mango selectors that decide which docs a share's replications carry.

Every clause pins its doc kind's `_id` prefix with an anchored `$regex`, so no doc outside
those prefixes can match whatever its `type` says: never `0000-config`, a design doc, an
`integration*` or a `_history` doc.
"""

from service.sharing.model import Access, Direction

# Doc kind -> the `_id` prefix the Inventory app gives it.
SHARED_PREFIXES = {
    "collection": "collection-",
    "item": "item-",
    "item_image": "item_image-",
    "image": "zz20-image-",
}

# Doc kind -> the field that links it to its collection, and how to test it.
_COLLECTION_LINK = {
    "item": ("data.collection_id", False),
    "item_image": ("data._item_collection_id", False),
    "image": ("data._item_collection_ids", True),
}


def _clause(*conditions: dict) -> dict:
    """All conditions at once, as an explicit `$and` (one field per condition)."""
    return {"$and": list(conditions)}


def _prefix(kind: str) -> dict:
    return {"_id": {"$regex": f"^{SHARED_PREFIXES[kind]}"}}


def _collection_ids(collections: list[str]) -> list[str]:
    return [f"{SHARED_PREFIXES['collection']}{c}" for c in collections]


def _live_clauses(collections: list[str] | None) -> list[dict]:
    """One clause per doc kind; `None` means every collection."""
    clauses = []
    for kind in SHARED_PREFIXES:
        conditions = [_prefix(kind), {"type": {"$eq": kind}}]
        if collections is not None:
            conditions.append(_in_collections(kind, collections))
        clauses.append(_clause(*conditions))
    return clauses


def _in_collections(kind: str, collections: list[str]) -> dict:
    if kind == "collection":
        return {"_id": {"$in": _collection_ids(collections)}}
    link, is_list = _COLLECTION_LINK[kind]
    return {link: {"$elemMatch": {"$in": collections}} if is_list else {"$in": collections}}


def _tombstone_clauses(collections: list[str] | None) -> list[dict]:
    """Deletions: a tombstone has no body, so it is matched by its `_id` alone.

    The trade-off: a tombstone of any item, item_image or image crosses, even of one that
    was never shared, so the other side learns the bare id of a deleted doc (no content).
    Collection tombstones are pinned to the shared collection ids.
    """
    kinds = [k for k in SHARED_PREFIXES if collections is None or k != "collection"]
    pattern = "|".join(SHARED_PREFIXES[k] for k in kinds)
    deleted = {"_deleted": {"$eq": True}}
    clauses = [_clause(deleted, {"_id": {"$regex": f"^({pattern})"}})]
    if collections:
        clauses.append(_clause(deleted, {"_id": {"$in": _collection_ids(collections)}}))
    return clauses


def share_selector(
    owner: str,
    recipient: str,
    access: Access,
    collections: list[str] | None,
    direction: Direction,
) -> dict:
    """The selector for one direction of a share."""
    clauses = _live_clauses(collections) + _tombstone_clauses(collections)
    if access is Access.READ_WRITE and direction is Direction.OWNER_TO_RECIPIENT:
        clauses.append({"_id": {"$eq": f"db_sharing-{owner}--{recipient}"}})
    return {"$or": clauses}
