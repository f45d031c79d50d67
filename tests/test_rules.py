"""Sharing by custom rules, end to end against pouchdb-server.

Alice's Kitchen (collection 1) holds three items with a picture each: two containers and
one plain item. A rule that shares only containers must carry the two and their pictures,
and nothing of the third; the write guard must judge the share user by the same rule.
"""

import re

import pytest
import requests

from tests.consistency import scopes
from tests.helpers import create_share, find_ids, replicator_docs, wait_for
from tests.servers.demo import ALICE, BOB

pytestmark = pytest.mark.fallback  # also run on pouchdb-server

CONTAINERS = [{"type": "item", "where": {"data.item_type": "container"}}]
PLAIN = [{"type": "item", "where": {"data.item_type": {"$ne": "container"}}}]
KITCHEN = {
    "collection-c0ll-uuid-1",
    "item-it3m-uuid-1",
    "item_image-it3m-uuid-1-1mg-uuid-1",
    "zz20-image-1mg-uuid-1",
}


def item_with_picture(n: int, item_type: str, collection: str = "c0ll-uuid-1") -> list[dict]:
    item_id, image_id = f"rule-item-{n}", f"rule-image-{n}"
    return [
        {
            "_id": f"item-{item_id}",
            "type": "item",
            "data": {"name": f"Thing {n}", "item_type": item_type, "collection_id": collection},
        },
        {
            "_id": f"item_image-{item_id}-{image_id}",
            "type": "item_image",
            "data": {"item_id": item_id, "image_id": image_id, "_item_collection_id": collection},
        },
        {
            "_id": f"zz20-image-{image_id}",
            "type": "image",
            "data": {"_item_ids": [item_id], "_item_collection_ids": [collection]},
        },
    ]


def ids(docs: list[dict]) -> set[str]:
    return {doc["_id"] for doc in docs}


CONTAINER_1, PLAIN_2 = item_with_picture(1, "container"), item_with_picture(2, "item")


@pytest.fixture
def kitchen(couch, dbs, registered):
    """Alice's Kitchen with one more container and one plain item, each with a picture."""
    response = couch.request(
        "POST", f"{dbs['alice']}/_bulk_docs", json={"docs": CONTAINER_1 + PLAIN_2}
    )
    response.raise_for_status()
    return dbs


def o2r(couch, share_id: str) -> dict:
    return replicator_docs(couch, share_id)[f"sharing-broker-{share_id}-owner-to-recipient"]


def login(couch, share_id: str) -> tuple[str, str]:
    basic = o2r(couch, share_id)["source"]["auth"]["basic"]
    return basic["username"], basic["password"]


def put_as(couch, auth, db: str, doc: dict) -> int:
    current = couch.request("GET", f"{db}/{doc['_id']}")
    body = {**doc, "_rev": current.json()["_rev"]} if current.ok else doc
    url = f"{couch.url}/{db}/{doc['_id']}"
    return requests.put(url, json=body, auth=auth, timeout=10).status_code


BAD_RULES = [
    ({"type": "item", "where": {"data.name": {"$where": "1"}}}, "rules.0.where.data.name.$where"),
    ({"type": "item", "where": {"_id": "item-x"}}, "rules.0.where._id"),
    ({"type": "item", "where": {"type": "config"}}, "rules.0.where.type"),
    ({"type": "item", "where": {"name": "Blender"}}, "rules.0.where.name"),
    ({"type": "item", "where": {"$nor": [{"data.name": "x"}]}}, "rules.0.where.$nor"),
    (
        {"type": "item", "where": {"data.name": {"$regex": "(a+)+$"}}},
        "rules.0.where.data.name.$regex",
    ),
    (
        {"type": "item", "where": {"data.name": {"$regex": "a" * 65}}},
        "rules.0.where.data.name.$regex",
    ),
    ({"type": "item", "where": {"data.count": {"$gt": "5"}}}, "rules.0.where.data.count.$gt"),
    ({"type": "item", "where": {"$or": []}}, "rules.0.where.$or"),
    (
        {"type": "item", "where": {"data.tags": {"$elemMatch": {"$regex": "a"}}}},
        "rules.0.where.data.tags.$elemMatch",
    ),
    ({"type": "image", "where": {"data.size": 1}}, "rules.0.type"),
]


@pytest.mark.parametrize(("rule", "field"), BAD_RULES, ids=[f for _, f in BAD_RULES])
def test_a_rule_outside_the_subset_is_422_naming_its_path(client, registered, rule, field):
    body = {"owner": ALICE, "recipient": BOB, "access": "read", "rules": [rule]}

    response = client.post("/v1/shares", json=body)

    assert response.status_code == 422, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert field in response.get_json()["errors"], response.get_json()
    assert client.get("/v1/shares").get_json()["items"] == []


def test_only_the_items_a_rule_lets_through_cross_with_their_pictures(client, couch, kitchen):
    share = create_share(client, collections=["c0ll-uuid-1"], rules=CONTAINERS)

    crossing = find_ids(couch, kitchen["alice"], o2r(couch, share["id"])["selector"])

    assert crossing == KITCHEN | ids(CONTAINER_1)
    assert share["rules"] == CONTAINERS


def test_a_collection_rule_narrows_the_collections_and_their_items(client, couch, kitchen):
    rules = [{"type": "collection", "where": {"data.name": {"$regex": "^Kit"}}}]
    share = create_share(client, collections=None, rules=rules)

    crossing = find_ids(couch, kitchen["alice"], o2r(couch, share["id"])["selector"])

    assert crossing == KITCHEN | ids(CONTAINER_1) | ids(PLAIN_2)  # not the Garage


def test_the_guard_judges_the_share_user_by_the_same_rules(client, couch, kitchen):
    share = create_share(client, access="read-write", collections=["c0ll-uuid-1"], rules=CONTAINERS)
    auth = login(couch, share["id"])
    container, plain = item_with_picture(3, "container")[0], item_with_picture(4, "item")[0]

    # Into Bob's database, as the owner->recipient replication writes.
    assert put_as(couch, auth, kitchen["bob"], container) == 201
    assert put_as(couch, auth, kitchen["bob"], plain) == 403
    assert put_as(couch, auth, kitchen["bob"], CONTAINER_1[1]) == 201
    assert put_as(couch, auth, kitchen["bob"], PLAIN_2[1]) == 403
    # Into Alice's, as Bob's edits come back: an edit may not take an item out of the rule.
    blender = couch.get(f"{kitchen['alice']}/item-it3m-uuid-1")
    emptied = {**blender, "data": {**blender["data"], "item_type": "item"}}
    assert put_as(couch, auth, kitchen["alice"], emptied) == 403
    renamed = {**blender, "data": {**blender["data"], "name": "Blender (Bob's)"}}
    assert put_as(couch, auth, kitchen["alice"], renamed) == 201
    plain_picture = PLAIN_2[1]  # the picture of an item the rule leaves out
    moved = {**plain_picture, "data": {**plain_picture["data"], "order": 1}}
    assert put_as(couch, auth, kitchen["alice"], moved) == 403


def test_preview_shows_what_leaves_the_owners_database(client, couch, kitchen):
    share = create_share(client, collections=["c0ll-uuid-1"], rules=CONTAINERS)

    preview = client.get(f"/v1/shares/{share['id']}/preview").get_json()

    assert preview["counts"] == {"collection": 1, "item": 2, "item_image": 2, "image": 2}
    assert preview["total"] == 7
    assert preview["first_ids"]["item"] == ["item-it3m-uuid-1", "item-rule-item-1"]


def test_a_dry_run_create_writes_nothing(client, couch, kitchen, calls):
    body = {"owner": ALICE, "recipient": BOB, "access": "read-write", "rules": PLAIN}

    response = client.post("/v1/shares?dry_run=true", json=body)

    assert response.status_code == 200
    preview = response.get_json()
    # Every collection, but of the items only the plain one, with its picture.
    assert preview["counts"] == {"collection": 2, "item": 1, "item_image": 1, "image": 1}
    assert preview["first_ids"]["item"] == ["item-rule-item-2"]
    assert [c for c in calls.calls if c[0] in ("PUT", "DELETE")] == []
    assert client.get("/v1/shares").get_json()["items"] == []


def test_patch_moves_the_selector_and_the_scope_together(client, couch, kitchen):
    share = create_share(client, access="read-write", collections=["c0ll-uuid-1"], rules=CONTAINERS)
    etag = client.get(f"/v1/shares/{share['id']}").headers["ETag"]
    auth = login(couch, share["id"])

    dry = client.patch(f"/v1/shares/{share['id']}?dry_run=true", json={"rules": PLAIN})
    assert dry.status_code == 200
    assert set(dry.get_json()["first_ids"]["item"]) == {"item-rule-item-2"}
    assert client.get(f"/v1/shares/{share['id']}").headers["ETag"] == etag

    response = client.patch(
        f"/v1/shares/{share['id']}", json={"rules": PLAIN}, headers={"If-Match": etag}
    )

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["rules"] == PLAIN
    crossing = find_ids(couch, kitchen["alice"], o2r(couch, share["id"])["selector"])
    assert crossing == {"collection-c0ll-uuid-1", f"db_sharing-{ALICE}--{BOB}"} | ids(PLAIN_2)
    assert scopes(couch, kitchen["bob"])[auth[0]]["rules"] == PLAIN
    # CouchDB judges a login by the user doc its cache holds, which catches up with the new
    # roles a moment later.
    plain_item = item_with_picture(6, "item")[0]
    wait_for(lambda: put_as(couch, auth, kitchen["bob"], plain_item) == 201, "the new guard")
    assert put_as(couch, auth, kitchen["bob"], item_with_picture(5, "container")[0]) == 403


def test_pictures_follow_items_that_come_to_match(app, client, couch, kitchen):
    share = create_share(client, collections=["c0ll-uuid-1"], rules=CONTAINERS)
    follow = app.extensions["sharing_broker"].rule_follow()
    follow.run()  # first look: followed from here on
    new_item, new_link, new_image = item_with_picture(7, "container")
    couch.request(
        "POST", f"{kitchen['alice']}/_bulk_docs", json={"docs": [new_item, new_link, new_image]}
    )
    selector = lambda: o2r(couch, share["id"])["selector"]  # noqa: E731
    assert new_link["_id"] not in find_ids(couch, kitchen["alice"], selector())

    assert follow.run() == {share["id"]: ["share_user", "replication:owner-to-recipient"]}

    crossing = find_ids(couch, kitchen["alice"], selector())
    assert {new_item["_id"], new_link["_id"], new_image["_id"]} <= crossing
    assert follow.run() == {}  # nothing changed since


def test_a_rewrite_that_failed_is_tried_again_without_a_new_change(
    app, client, couch, kitchen, faults
):
    """Also when the replicator's end of a one-shot run changed the doc meanwhile."""
    share = create_share(client, collections=["c0ll-uuid-1"], rules=CONTAINERS)
    follow = app.extensions["sharing_broker"].rule_follow()
    follow.run()
    new = item_with_picture(7, "container")
    couch.request("POST", f"{kitchen['alice']}/_bulk_docs", json={"docs": new})
    replicator_writes = re.compile(re.escape(couch.url) + "/_replicator/.+")
    fault = faults.add("PUT", replicator_writes, status=500, json={"error": "injected"})

    assert follow.run() == {}  # the guard moved, the selector's rewrite failed
    assert follow.pending
    faults.remove(fault)
    nothing_moved = set()

    assert follow.run(nothing_moved) == {share["id"]: ["replication:owner-to-recipient"]}
    assert not follow.pending
    assert {doc["_id"] for doc in new} <= find_ids(
        couch, kitchen["alice"], o2r(couch, share["id"])["selector"]
    )


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ({"data.name": "x" * 1001}, "at most 1000 characters"),
        ({"data.name": {"$regex": 'say "hi"'}}, "no quotes"),
        ({"data.count": {"$gt": 2**60}}, "between -2^53 and 2^53"),
    ],
)
def test_a_refused_value_says_what_the_limit_is(client, registered, where, says):
    rules = [{"type": "item", "where": where}]
    response = client.post(
        "/v1/shares", json={"owner": ALICE, "recipient": BOB, "access": "read", "rules": rules}
    )
    assert response.status_code == 422
    assert says in response.get_json()["detail"]
