"""Mango selectors that decide which docs a share's replications carry.

Every clause pins its doc kind's `_id` prefix with an anchored `$regex`, so no doc outside
those prefixes can match whatever its `type` says: never `0000-config`, a design doc, an
`integration*` or a `_history` doc.
"""

from dataclasses import dataclass

from service.sharing.core.model import Access, Direction
from service.sharing.crossing.rules import Rule, rules_condition

# Doc kind -> the `_id` prefix the Inventory app gives it.
SHARED_PREFIXES = {
    "collection": "collection-",
    "item": "item-",
    "item_image": "item_image-",
    "image": "zz20-image-",
}

# The field of the tombstones the broker writes into a recipient's database when a share
# ends, naming the share. Such a tombstone takes the owner's doc off the recipient's devices;
# no selector ever carries it, and no guard lets a share user write it anywhere.
ENDED_MARK = "sharing_broker_ended"

# Doc kind -> the field that links it to its collection, and how to test it.
_COLLECTION_LINK = {
    "item": ("data.collection_id", False),
    "item_image": ("data._item_collection_id", False),
    "image": ("data._item_collection_ids", True),
}


@dataclass(frozen=True)
class Scope:
    """What one direction of a share carries.

    `collections`: the collection docs that may cross (`None`: any). `rules`: custom rules
    a collection or item must also pass. `item_collections`: the collections whose items
    and pictures may cross, when a collection rule narrows them (`None`: `collections`).
    `item_ids`: when an item rule narrows the items, the ids of those it lets through, so
    their pictures follow them and no others do.
    """

    collections: list[str] | None
    rules: tuple[Rule, ...] = ()
    item_collections: list[str] | None = None
    item_ids: list[str] | None = None

    @property
    def collections_of_items(self) -> list[str] | None:
        return self.collections if self.item_collections is None else self.item_collections


# Picture kind -> the field that links it to its item.
_ITEM_LINK = {"item_image": ("data.item_id", False), "image": ("data._item_ids", True)}


def _clause(*conditions: dict) -> dict:
    """All conditions at once, as an explicit `$and` (one field per condition)."""
    return {"$and": list(conditions)}


def _prefix(kind: str) -> dict:
    return {"_id": {"$regex": f"^{SHARED_PREFIXES[kind]}"}}


def _collection_ids(collections: list[str]) -> list[str]:
    return [f"{SHARED_PREFIXES['collection']}{c}" for c in collections]


def _live_clauses(scope: Scope) -> list[dict]:
    """One clause per doc kind."""
    return [_clause(*kind_conditions(kind, scope)) for kind in SHARED_PREFIXES]


def kind_conditions(kind: str, scope: Scope) -> list[dict]:
    """The conditions a live doc of `kind` must meet to be in `scope`."""
    conditions = [_prefix(kind), {"type": {"$eq": kind}}]
    collections = scope.collections if kind == "collection" else scope.collections_of_items
    if collections is not None:
        conditions.append(_in_collections(kind, collections))
    rule = rules_condition(list(scope.rules), kind)
    if rule is not None:
        conditions.append(rule)
    if scope.item_ids is not None and kind in _ITEM_LINK:
        link, is_list = _ITEM_LINK[kind]
        ids = scope.item_ids
        conditions.append({link: {"$elemMatch": {"$in": ids}} if is_list else {"$in": ids}})
    return conditions


def _in_collections(kind: str, collections: list[str]) -> dict:
    if kind == "collection":
        return {"_id": {"$in": _collection_ids(collections)}}
    link, is_list = _COLLECTION_LINK[kind]
    return {link: {"$elemMatch": {"$in": collections}} if is_list else {"$in": collections}}


def _tombstone_clauses(collections: list[str] | None) -> list[dict]:
    """Deletions: a tombstone has no body, so it is matched by its `_id` alone.

    The trade-off: a tombstone of any item, item_image or image crosses, even of one that
    was never shared, so the other side learns the bare id of a deleted doc (no content).
    Collection tombstones are pinned to the shared collection ids. A tombstone the broker
    wrote when a share ended (`ENDED_MARK`) never crosses: it withdrew the owner's doc from
    the recipient, and must not delete it anywhere else.
    """
    kinds = [k for k in SHARED_PREFIXES if collections is None or k != "collection"]
    pattern = "|".join(SHARED_PREFIXES[k] for k in kinds)
    deleted = ({"_deleted": {"$eq": True}}, {ENDED_MARK: {"$exists": False}})
    clauses = [_clause(*deleted, {"_id": {"$regex": f"^({pattern})"}})]
    if collections:
        clauses.append(_clause(*deleted, {"_id": {"$in": _collection_ids(collections)}}))
    return clauses


def share_selector(
    owner: str,
    recipient: str,
    access: Access,
    scope: Scope,
    direction: Direction,
) -> dict:
    """The selector for one direction of a share."""
    clauses = _live_clauses(scope) + _tombstone_clauses(scope.collections)
    if access is Access.READ_WRITE and direction is Direction.OWNER_TO_RECIPIENT:
        clauses.append({"_id": {"$eq": f"db_sharing-{owner}--{recipient}"}})
    return {"$or": clauses}
