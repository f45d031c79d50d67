"""Rules, proven with random rule trees: they only narrow, and every engine agrees.

- Compiled into a share's selector, no rule reaches past the type and `_id`-prefix guard or
  the chosen collections, on the fixture database with hostile docs (`_find`).
- The same rule, compiled to Mango and judged by the guard's JavaScript evaluator, picks the
  same docs in CouchDB's Mango engine, in the broker's own evaluator, in Node, and in the
  real write guard: negations pushed down to the fields, as CouchDB does.
"""

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.couch import CouchClient
from service.sharing.core.model import Access, Direction
from service.sharing.crossing.mango import matches
from service.sharing.crossing.preview import matching_ids
from service.sharing.crossing.rules import JS_HELPERS, parse_rules, rules_condition
from service.sharing.crossing.selectors import SHARED_PREFIXES, Scope, share_selector
from service.sharing.placing.guard import guard_doc, member_role, scope_role
from tests.helpers import find_ids, roles_in_force, wait_for
from tests.rule_strategies import datas, rules, selectors
from tests.servers.demo import ALICE, BOB, alice_docs

pytestmark = pytest.mark.fallback  # also run on pouchdb-server

PREDICATE_JS = Path(__file__).resolve().parent / "js" / "predicate.js"
EXAMPLES = settings(
    max_examples=int(os.environ.get("RULE_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HOSTILE = ["hostile-item", "_design/evil", "integration-x", "zzd-history-x", "0000-config"]
ITEM_DATA = [
    {"name": "Blender", "item_type": "container", "tags": ["Family", "a"], "count": 2},
    {"name": "ab", "item_type": "item", "tags": [], "count": -1},
    {"name": "x y", "tags": ["b"], "count": "3", "nested": {"level": 1}},
    {"name": 3, "item_type": None, "tags": "a", "nested": {"level": "ab"}},
]


@pytest.fixture(scope="module")
def owner_db(couch):
    """Alice's docs, more items with pictures in both collections, and hostile docs."""
    name = f"rules-{uuid.uuid4().hex[:8]}"
    docs = [d for d in alice_docs() if d["_id"] != "0000-config"]
    for n, data in enumerate(ITEM_DATA * 2):
        collection = f"c0ll-uuid-{1 + n % 2}"
        item_id, image_id = f"it3m-extra-{n}", f"1mg-extra-{n}"
        docs += [
            {
                "_id": f"item-{item_id}",
                "type": "item",
                "data": {**data, "collection_id": collection},
            },
            {
                "_id": f"item_image-{item_id}-{image_id}",
                "type": "item_image",
                "data": {"item_id": item_id, "_item_collection_id": collection},
            },
            {
                "_id": f"zz20-image-{image_id}",
                "type": "image",
                "data": {"_item_ids": [item_id], "_item_collection_ids": [collection]},
            },
        ]
    claim = {"type": "item", "data": {"collection_id": "c0ll-uuid-1", **ITEM_DATA[0]}}
    docs += [{"_id": doc_id, **claim} for doc_id in HOSTILE]
    couch.create_db(name, docs)
    return name


def _in_guard(doc_id: str, doc: dict, collections: list[str] | None) -> bool:
    kind = doc.get("type")
    if kind not in SHARED_PREFIXES or not doc_id.startswith(SHARED_PREFIXES[kind]):
        return False
    if collections is None:
        return True
    data = doc.get("data") or {}
    linked = {
        "collection": [doc_id.removeprefix("collection-")],
        "item": [data.get("collection_id")],
        "item_image": [data.get("_item_collection_id")],
        "image": data.get("_item_collection_ids") or [],
    }[kind]
    return any(c in collections for c in linked)


@EXAMPLES
@given(raw=rules, collections=st.sampled_from([None, ["c0ll-uuid-1"]]))
def test_no_rule_reaches_past_the_guard(couch, owner_db, raw, collections):
    gateway = CouchClient(couch.url, *couch.admin)
    parsed = tuple(parse_rules(raw))
    scope = Scope(collections, parsed)
    if any(r.type == "collection" for r in parsed):
        scope = Scope(collections, parsed, matching_ids(gateway, owner_db, "collection", scope))
    if any(r.type == "item" for r in parsed):
        item_ids = matching_ids(gateway, owner_db, "item", scope)
        scope = Scope(collections, parsed, scope.item_collections, item_ids)
    o2r = Direction.OWNER_TO_RECIPIENT
    narrowed = share_selector(ALICE, BOB, Access.READ, scope, o2r)
    unruled = share_selector(ALICE, BOB, Access.READ, Scope(collections), o2r)

    found = _find(couch, owner_db, narrowed)

    assert set(found) <= set(_find(couch, owner_db, unruled))
    for doc_id, doc in found.items():
        assert _in_guard(doc_id, doc, collections), doc_id
    pictures = {i for i, d in found.items() if d["type"] in ("item_image", "image")}
    items = {i.removeprefix("item-") for i, d in found.items() if d["type"] == "item"}
    for picture in pictures:  # a picture crosses only with an item that crosses
        data = found[picture]["data"]
        assert {data.get("item_id"), *data.get("_item_ids", [])} & items, picture


@pytest.mark.couchdb  # the oracle is CouchDB's Mango engine; pouchdb-find differs on $not
@EXAMPLES
@given(
    where=selectors,
    docs=st.lists(datas, min_size=1, max_size=8),
)
def test_mango_javascript_and_the_evaluator_agree(couch, where, docs):
    parsed = parse_rules([{"type": "item", "where": where}])
    selector = _items_passing(parsed)
    items = [{"_id": f"item-{n}", "type": "item", "data": data} for n, data in enumerate(docs)]
    db = f"differential-{uuid.uuid4().hex[:8]}"
    couch.create_db(db, items)
    try:
        in_mango = find_ids(couch, db, selector)
    finally:
        couch.request("DELETE", db)
    in_node = set(_run_js(_rules_predicate([{"type": "item", "where": where}]), items))
    in_python = {item["_id"] for item in items if matches(selector, item)}
    assert in_mango == in_node == in_python, (where, items)


@pytest.fixture(scope="module")
def guarded(couch):
    """A database with the broker's guard and a stand-in share user, a member by its role."""
    db, name, password = (
        f"guarded-{uuid.uuid4().hex[:8]}",
        f"rule-user-{uuid.uuid4().hex[:6]}",
        "pw",
    )
    couch.create_db(db, [])
    couch.add_member(db, name, password)
    security = couch.get(f"{db}/_security")
    couch.put(f"{db}/_security", {**security, "members": {"names": [], "roles": [member_role(db)]}})
    couch.put(f"{db}/_design/sharing-broker-guard", guard_doc(db, "test-broker"))
    return db, (name, password)


def _give_scope(couch, db: str, auth: tuple[str, str], scope: dict) -> None:
    """Set the user's roles to membership and `scope` in `db`, and wait until its logins
    carry them (CouchDB caches users for a moment)."""
    path = f"_users/org.couchdb.user:{auth[0]}"
    roles = [member_role(db), scope_role(db, scope)]
    couch.put(path, {**couch.get(path), "roles": roles})
    wait_for(lambda: roles_in_force(couch, auth) == roles, "the user's new scope")


@pytest.mark.couchdb
@settings(EXAMPLES, max_examples=25)
@given(where=selectors, docs=st.lists(datas, min_size=1, max_size=6))
def test_the_guard_lets_through_exactly_what_mango_selects(couch, guarded, where, docs):
    db, auth = guarded
    raw = [{"type": "item", "where": where}]
    scope = {"read_only": False, "collections": None, "rules": raw, "db_sharing": None}
    _give_scope(couch, db, auth, scope)
    prefix = uuid.uuid4().hex[:8]
    selector = _items_passing(parse_rules(raw), {"_id": {"$regex": f"^item-{prefix}-"}})
    items = [{"_id": f"item-{prefix}-{n}", "type": "item", "data": d} for n, d in enumerate(docs)]

    accepted = {
        item["_id"]
        for item in items
        if requests.put(f"{couch.url}/{db}/{item['_id']}", json=item, auth=auth, timeout=10).ok
    }

    assert accepted == {item["_id"] for item in items if matches(selector, item)}
    assert accepted == find_ids(couch, db, selector)


def _items_passing(parsed, *conditions: dict) -> dict:
    """Items that pass the rules, in the shape of the broker's selector clauses."""
    return {"$and": [{"type": "item"}, *conditions, rules_condition(parsed, "item")]}


def _find(couch, db: str, selector: dict) -> dict[str, dict]:
    response = couch.request("POST", f"{db}/_find", json={"selector": selector, "limit": 10_000})
    response.raise_for_status()
    return {doc["_id"]: doc for doc in response.json()["docs"]}


def _rules_predicate(rules: list[dict]) -> str:
    """A function of `doc` that judges items as the guard does."""
    return f"function (doc) {{ return rpass({json.dumps(rules)}, 'item', doc); }}"


def _run_js(predicate: str, docs: list[dict]) -> list[str]:
    payload = json.dumps({"helpers": JS_HELPERS, "predicate": predicate, "docs": docs})
    done = subprocess.run(
        ["node", str(PREDICATE_JS)], input=payload, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)
