"""What a selector picks out of the owner's database: counts per type and the first ids."""

from dataclasses import dataclass, field

from service.couch import CouchClient
from service.sharing.crossing.selectors import SHARED_PREFIXES, Scope, kind_conditions

PAGE = 1000
FIRST = 5


@dataclass
class Preview:
    """Counts of the docs a share carries, per type, and the first ids of each type."""

    counts: dict[str, int] = field(default_factory=dict)
    first_ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def preview(couch: CouchClient, db: str, selector: dict) -> Preview:
    """Run `selector` through `_find` on `db`, page by page."""
    result = Preview()
    for doc in _find(couch, db, selector, ["_id", "type"]):
        kind = str(doc.get("type"))
        result.counts[kind] = result.counts.get(kind, 0) + 1
        first = result.first_ids.setdefault(kind, [])
        if len(first) < FIRST:
            first.append(doc["_id"])
    return result


def matching_ids(couch: CouchClient, db: str, kind: str, scope: Scope) -> list[str]:
    """The ids (without their prefix) of the live docs of `kind` in `scope`, sorted."""
    selector = {"$and": kind_conditions(kind, scope)}
    prefix = SHARED_PREFIXES[kind]
    return sorted(doc["_id"].removeprefix(prefix) for doc in _find(couch, db, selector, ["_id"]))


def _find(couch: CouchClient, db: str, selector: dict, fields: list[str]):
    skip = 0
    while True:
        query = {"selector": selector, "fields": fields, "limit": PAGE, "skip": skip}
        docs = couch.post(db, "_find", json=query)["docs"]
        yield from docs
        if len(docs) < PAGE:
            return
        skip += PAGE
