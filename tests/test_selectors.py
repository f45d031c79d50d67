"""Every selector the broker writes, proven on the real Mango engine of the test server.

`_find` with a share's selector on the owner's database returns exactly the docs that the
replication would carry. The hostile docs claim a shared type and collection, but sit
outside the `_id` prefixes, so none of them may ever match.
"""

import uuid

import pytest

from service.sharing.core.model import Access, Direction
from service.sharing.crossing.mango import matches
from service.sharing.crossing.selectors import ENDED_MARK, Scope, share_selector
from tests.servers.demo import ALICE, BOB, alice_docs

pytestmark = pytest.mark.fallback  # also run on pouchdb-server

SHARED = {"collection": "c0ll-uuid-1"}
HOSTILE_IDS = [
    "hostile-item",
    "_design/evil",
    "integration-evil",
    "integration_deleted_data-item-evil",
    "zzd-history-evil",
    "ITEM-upper-case",
    "xitem-1",
    "item_image-but-typed-item",
    "db_sharing-" + ALICE + "--someone-else",
]
CLAIM = {"type": "item", "data": {"collection_id": "c0ll-uuid-1", "config_uuid": ALICE}}
COLLECTION_1 = {
    "collection-c0ll-uuid-1",
    "item-it3m-uuid-1",
    "item_image-it3m-uuid-1-1mg-uuid-1",
    "zz20-image-1mg-uuid-1",
}
COLLECTION_2 = {
    "collection-c0ll-uuid-2",
    "item-it3m-uuid-2",
    "item_image-it3m-uuid-2-1mg-uuid-2",
    "zz20-image-1mg-uuid-2",
}
DB_SHARING = f"db_sharing-{ALICE}--{BOB}"


@pytest.fixture(scope="module")
def owner_db(couch):
    """Alice's docs, a hostile `0000-config` and hostile docs posing as shared items."""
    name = f"selectors-{uuid.uuid4().hex[:8]}"
    docs = [d for d in alice_docs() if d["_id"] != "0000-config"]
    docs.append({"_id": "0000-config", "uuid": ALICE, **CLAIM})
    docs += [{"_id": doc_id, **CLAIM} for doc_id in HOSTILE_IDS]
    docs.append({"_id": DB_SHARING, "type": "db_sharing", "data": {"permissions": ["read"]}})
    couch.create_db(name, docs)
    return name


def find(couch, db: str, selector: dict) -> dict[str, dict]:
    body = {"selector": selector, "limit": 10_000}
    response = couch.request("POST", f"{db}/_find", json=body)
    response.raise_for_status()
    return {doc["_id"]: doc for doc in response.json()["docs"]}


O2R, R2O = Direction.OWNER_TO_RECIPIENT, Direction.RECIPIENT_TO_OWNER
CASES = [
    pytest.param(Access.READ, ["c0ll-uuid-1"], O2R, COLLECTION_1, id="read, one collection"),
    pytest.param(Access.READ, None, O2R, COLLECTION_1 | COLLECTION_2, id="read, all"),
    pytest.param(
        Access.READ_WRITE, ["c0ll-uuid-1"], O2R, COLLECTION_1 | {DB_SHARING}, id="rw, owner side"
    ),
    pytest.param(Access.READ_WRITE, ["c0ll-uuid-1"], R2O, COLLECTION_1, id="rw, recipient side"),
    pytest.param(
        Access.READ, ["c0ll-uuid-2", "c0ll-uuid-1"], O2R, COLLECTION_1 | COLLECTION_2, id="two"
    ),
    pytest.param(Access.READ, ["nope"], O2R, set(), id="no such collection"),
]


@pytest.mark.parametrize(("access", "collections", "direction", "expected"), CASES)
def test_find_returns_exactly_the_shared_docs(
    couch, owner_db, access, collections, direction, expected
):
    selector = share_selector(ALICE, BOB, access, Scope(collections), direction)
    found = find(couch, owner_db, selector)
    assert set(found) == expected
    assert not set(found) & {"0000-config", *HOSTILE_IDS}


@pytest.mark.parametrize(("access", "collections", "direction", "expected"), CASES)
def test_broker_evaluator_agrees_with_mango(
    couch, owner_db, access, collections, direction, expected
):
    """The broker's own evaluator (used to pick what to purge) judges like the engine."""
    selector = share_selector(ALICE, BOB, access, Scope(collections), direction)
    everything = couch.all_docs(owner_db)
    assert {i for i, doc in everything.items() if matches(selector, doc)} == set(
        find(couch, owner_db, selector)
    )


def test_tombstones_match_by_id_only_within_the_prefixes():
    """A tombstone has no body: its clause pins the `_id` prefixes (and shared collections)."""
    selector = share_selector(
        ALICE, BOB, Access.READ, Scope(["c0ll-uuid-1"]), Direction.OWNER_TO_RECIPIENT
    )

    def tombstone(doc_id):
        return {"_id": doc_id, "_rev": "2-x", "_deleted": True}

    for doc_id in ["item-any", "item_image-a-b", "zz20-image-any", "collection-c0ll-uuid-1"]:
        assert matches(selector, tombstone(doc_id)), doc_id
    for doc_id in [
        "collection-c0ll-uuid-2",
        "0000-config",
        "_design/app_sync_v0",
        "integration-1",
        DB_SHARING,
    ]:
        assert not matches(selector, tombstone(doc_id)), doc_id
    read_write = share_selector(
        ALICE, BOB, Access.READ_WRITE, Scope(["c0ll-uuid-1"]), Direction.OWNER_TO_RECIPIENT
    )
    assert matches(read_write, tombstone(DB_SHARING))


@pytest.mark.couchdb  # pouchdb-server falls over on `filter=_selector`
def test_a_tombstone_that_ended_a_share_crosses_in_no_direction(couch, owner_db):
    """On the engine, as the replicator reads it (`_changes` with `filter=_selector`, which
    unlike `_find` sees tombstones): the ones the broker writes when a share ends never match."""
    for doc_id in ("item-it3m-uuid-1", "collection-c0ll-uuid-1"):
        rev = couch.get(f"{owner_db}/{doc_id}")["_rev"]
        couch.put(f"{owner_db}/{doc_id}", {"_rev": rev, "_deleted": True, ENDED_MARK: "s"})
    couch.put(f"{owner_db}/item-deleted-plainly", {"_deleted": True})
    for access in Access:
        for direction in Direction:
            selector = share_selector(ALICE, BOB, access, Scope(["c0ll-uuid-1"]), direction)
            response = couch.request(
                "POST", f"{owner_db}/_changes?filter=_selector", json={"selector": selector}
            )
            ids = {row["id"] for row in response.json()["results"]}
            assert "item-deleted-plainly" in ids
            assert not ids & {"item-it3m-uuid-1", "collection-c0ll-uuid-1"}


def test_tombstone_clauses_match_no_live_doc(couch, owner_db):
    """On the engine, the tombstone clauses alone select nothing that is alive."""
    selector = share_selector(ALICE, BOB, Access.READ, Scope(None), Direction.OWNER_TO_RECIPIENT)
    tombstone_clauses = [
        c for c in selector["$or"] if any("_deleted" in cond for cond in c.get("$and", []))
    ]
    assert tombstone_clauses
    assert find(couch, owner_db, {"$or": tombstone_clauses}) == {}


def test_every_clause_pins_an_id_prefix_or_an_exact_id():
    for access in Access:
        for direction in Direction:
            for clause in share_selector(ALICE, BOB, access, Scope(None), direction)["$or"]:
                conditions = clause.get("$and", [clause])
                id_conditions = [c["_id"] for c in conditions if "_id" in c]
                assert any(
                    set(c) == {"$eq"} or c.get("$regex", "").startswith("^") for c in id_conditions
                ), clause


def test_evaluator_refuses_operators_it_does_not_know():
    with pytest.raises(ValueError, match=r"\$mod"):
        matches({"a": {"$mod": [2, 0]}}, {"a": 2})
    with pytest.raises(ValueError, match=r"\$xor"):
        matches({"$xor": [{"a": 1}]}, {"a": 2})
