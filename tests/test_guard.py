"""The write guard: a share user writes only inside its share; everyone else is let be.

Every write here goes over HTTP to the server as the share user, whose
validate_doc_update runs with that user's `userCtx`: its roles carry its scope.
"""

import base64
import secrets

import pytest
import requests

from service.sharing.crossing.selectors import ENDED_MARK
from service.sharing.placing import guard
from tests.consistency import scopes
from tests.helpers import GUARD_ID, create_share, replicator_docs, roles_in_force, wait_for
from tests.servers.demo import ALICE, BOB

RW = {"access": "read-write", "collections": ["c0ll-uuid-1"]}
SHARED_ITEM = {"type": "item", "data": {"collection_id": "c0ll-uuid-1", "config_uuid": BOB}}


def login(couch, share_id: str) -> tuple[str, str]:
    doc = replicator_docs(couch, share_id)[f"sharing-broker-{share_id}-owner-to-recipient"]
    return doc["source"]["auth"]["basic"]["username"], doc["source"]["auth"]["basic"]["password"]


class Writer:
    """Writes to one database over HTTP as one user."""

    def __init__(self, couch, db: str, auth):
        self.couch, self.db, self.auth = couch, db, auth

    def put(self, doc_id: str, body: dict) -> int:
        current = self.couch.request("GET", f"{self.db}/{doc_id}")
        if current.ok:
            body = {**body, "_rev": current.json()["_rev"]}
        url = f"{self.couch.url}/{self.db}/{doc_id}"
        return requests.put(url, json=body, auth=self.auth, timeout=10).status_code

    def delete(self, doc_id: str) -> int:
        rev = self.couch.get(f"{self.db}/{doc_id}")["_rev"]
        url = f"{self.couch.url}/{self.db}/{doc_id}"
        return requests.delete(url, params={"rev": rev}, auth=self.auth, timeout=10).status_code


@pytest.fixture
def rw_share(client, couch, registered, dbs):
    share = create_share(client, **RW)
    auth = login(couch, share["id"])
    return share, Writer(couch, dbs["alice"], auth), Writer(couch, dbs["bob"], auth)


REFUSED_IN_RECIPIENT = [
    ("0000-config", {"uuid": ALICE}),
    ("integration-1ntg-evil", {"type": "integration", "data": {}}),
    ("zzd-history-evil", {"type": "_history"}),
    ("item-unshared", {"type": "item", "data": {"collection_id": "c0ll-uuid-2"}}),
    ("hostile-item", SHARED_ITEM),
    ("collection-b0b-coll-1", {"type": "collection", "data": {"name": "taken over"}}),
]


@pytest.mark.parametrize(
    ("doc_id", "body"), REFUSED_IN_RECIPIENT, ids=[d for d, _ in REFUSED_IN_RECIPIENT]
)
def test_out_of_scope_writes_into_the_recipient_are_refused(rw_share, doc_id, body):
    _, _, bob = rw_share
    assert bob.put(doc_id, body) == 403


def test_a_design_doc_is_refused(rw_share):
    _, alice, bob = rw_share
    ddoc = {"views": {"x": {"map": "function (doc) { emit(doc._id); }"}}}
    assert bob.put("_design/evil", ddoc) in (401, 403)
    assert alice.put("_design/evil", ddoc) in (401, 403)


def test_in_scope_writes_and_deletes_pass(rw_share):
    _, alice, bob = rw_share
    assert bob.put("item-new-1", SHARED_ITEM) == 201
    assert (
        bob.put("item-new-1", {**SHARED_ITEM, "data": {**SHARED_ITEM["data"], "name": "x"}}) == 201
    )
    assert bob.put(f"db_sharing-{ALICE}--{BOB}", {"type": "db_sharing", "data": {}}) == 201
    assert bob.delete("item-new-1") == 200
    edit = {"collection_id": "c0ll-uuid-1", "config_uuid": ALICE, "name": "Bob's edit"}
    assert alice.put("item-it3m-uuid-1", {"type": "item", "data": edit}) == 201
    assert alice.put("item-b0b-new", SHARED_ITEM) == 201  # Bob's own item, in her collection


def test_the_recipient_cannot_pass_a_doc_off_as_the_owners(rw_share):
    """The way back carries the recipient's items into the owner's collection: labelled as
    the recipient's, they never pass for the owner's, and nothing changes whose it is."""
    _, alice, _ = rw_share
    as_alices = {"type": "item", "data": {"collection_id": "c0ll-uuid-1", "config_uuid": ALICE}}
    assert alice.put("item-b0b-forged", as_alices) == 403
    as_bobs = {"type": "item", "data": {"collection_id": "c0ll-uuid-1", "config_uuid": BOB}}
    assert alice.put("item-it3m-uuid-1", as_bobs) == 403  # Alice's item, relabelled
    assert alice.put("item-b0b-new", SHARED_ITEM) == 201
    assert alice.put("item-b0b-new", {**SHARED_ITEM, "data": as_alices["data"]}) == 403


def test_what_a_share_carries_is_bounded_in_size(client, couch, registered, dbs, monkeypatch):
    monkeypatch.setattr(guard, "MAX_ATTACHMENT_BYTES", 100)
    monkeypatch.setattr(guard, "MAX_DOC_CHARS", 2_000)
    share = create_share(client, **RW)
    auth = login(couch, share["id"])
    alice, bob = Writer(couch, dbs["alice"], auth), Writer(couch, dbs["bob"], auth)
    big = {**SHARED_ITEM, "data": {**SHARED_ITEM["data"], "notes": "x" * 2_000}}
    assert bob.put("item-too-big", big) == 403
    assert alice.put("item-too-big", {**big, "data": {**big["data"], "config_uuid": BOB}}) == 403

    def image(size: int) -> dict:
        data = base64.b64encode(b"\0" * size).decode()
        attachment = {"content_type": "image/png", "data": data}
        linked = {"_item_ids": ["it3m-uuid-1"], "_item_collection_ids": ["c0ll-uuid-1"]}
        return {"type": "image", "data": linked, "_attachments": {"image-1440": attachment}}

    assert bob.put("zz20-image-small", image(50)) == 201
    assert bob.put("zz20-image-large", image(200)) == 403


def test_the_owners_unshared_docs_cannot_be_changed_or_deleted_through_the_way_back(rw_share):
    _, alice, _ = rw_share
    assert alice.put("item-it3m-uuid-2", SHARED_ITEM) == 403  # moving it into scope
    assert alice.delete("item-it3m-uuid-2") == 403
    assert alice.put("0000-config", {"uuid": BOB}) == 403
    assert alice.put(f"db_sharing-{ALICE}--{BOB}", {"type": "db_sharing", "data": {}}) == 403


def test_a_tombstone_that_ended_a_share_is_refused_everywhere(rw_share):
    """Such a tombstone withdrew the owner's doc from a recipient; carried, it would delete
    the doc where it lives."""
    _, alice, bob = rw_share
    rev = alice.couch.get(f"{alice.db}/item-it3m-uuid-1")["_rev"]
    ended = {"_deleted": True, "_rev": rev, ENDED_MARK: "an-earlier-share"}
    url = f"{alice.couch.url}/{alice.db}/item-it3m-uuid-1"
    assert requests.put(url, json=ended, auth=alice.auth, timeout=10).status_code == 403
    assert bob.put("item-new-1", SHARED_ITEM) == 201
    rev = bob.couch.get(f"{bob.db}/item-new-1")["_rev"]
    url = f"{bob.couch.url}/{bob.db}/item-new-1"
    ended = {"_deleted": True, "_rev": rev, ENDED_MARK: "an-earlier-share"}
    assert requests.put(url, json=ended, auth=bob.auth, timeout=10).status_code == 403


def test_read_only_lets_nothing_into_the_owners_database(client, couch, registered, dbs):
    share = create_share(client)
    auth = login(couch, share["id"])
    alice, bob = Writer(couch, dbs["alice"], auth), Writer(couch, dbs["bob"], auth)
    assert (
        alice.put("item-it3m-uuid-1", {"type": "item", "data": {"collection_id": "c0ll-uuid-1"}})
        == 403
    )
    assert alice.put("item-brand-new", SHARED_ITEM) == 403
    assert bob.put("item-new-2", SHARED_ITEM) == 201


def test_the_databases_own_users_are_never_blocked(rw_share, couch, dbs):
    _, _, _ = rw_share
    owner = Writer(couch, dbs["alice"], couch.admin)
    assert owner.put("integration-mine", {"type": "integration", "data": {}}) == 201
    assert owner.delete("item-it3m-uuid-2") == 200


def test_the_guard_follows_patch_and_stays_the_same_for_every_share(rw_share, client, couch, dbs):
    share, _, bob = rw_share
    guards = {db: couch.get(f"{db}/{GUARD_ID}")["_rev"] for db in dbs.values()}
    etag = client.get(f"/v1/shares/{share['id']}").headers["ETag"]
    client.patch(
        f"/v1/shares/{share['id']}",
        json={"collections": ["c0ll-uuid-2"]},
        headers={"If-Match": etag},
    )
    assert bob.put("item-c1", SHARED_ITEM) == 403
    assert bob.put("item-c2", {"type": "item", "data": {"collection_id": "c0ll-uuid-2"}}) == 201
    client.delete(f"/v1/shares/{share['id']}")
    assert bob.put("item-c3", {"type": "item", "data": {"collection_id": "c0ll-uuid-2"}}) == 401
    for db in dbs.values():
        assert couch.get(f"{db}/{GUARD_ID}")["_rev"] == guards[db]  # never edited
        assert scopes(couch, db) == {}


def test_a_share_user_with_no_scope_in_a_database_writes_nothing_there(rw_share, couch):
    """A member by its role, with its scope role gone (by hand, or an edit half-done): the
    guard refuses it rather than let it be as if it were nobody's."""
    _, _, bob = rw_share
    name = bob.auth[0]
    user = couch.get(f"_users/org.couchdb.user:{name}")
    here = f"{guard.SCOPE_ROLE}{bob.db}:"
    user["roles"] = [r for r in user["roles"] if not r.startswith(here)]
    couch.put(f"_users/org.couchdb.user:{name}", user)

    in_force = lambda: roles_in_force(couch, bob.auth)  # noqa: E731
    wait_for(lambda: not any(r.startswith(here) for r in in_force()), "the roles in force")
    assert guard.member_role(bob.db) in in_force()
    assert bob.put("item-c1", SHARED_ITEM) == 403
    assert couch.request("GET", f"{bob.db}/item-c1").status_code == 404


def test_a_user_named_like_an_object_key_is_nobody_to_the_guard(couch, dbs, settings):
    """The earlier scopes a guard keeps are looked up by own key only: a user called
    `toString` is one of the database's own, and writes what it likes."""
    db = dbs["alice"]
    earlier = {"sharing-broker-from-before": {"read_only": True}}
    couch.put(f"{db}/{GUARD_ID}", guard.guard_doc(db, settings.state_db, earlier))
    name, password = "toString", f"pw-{secrets.token_hex(8)}"
    user = {"name": name, "password": password, "roles": [], "type": "user"}
    couch.put(f"_users/org.couchdb.user:{name}", user)
    try:
        security = couch.get(f"{db}/_security")
        security["members"]["names"].append(name)
        couch.put(f"{db}/_security", security)
        url = f"{couch.url}/{db}/notes-of-her-own"
        response = requests.put(url, json={"note": "mine"}, auth=(name, password), timeout=10)
        assert response.status_code == 201, response.text
    finally:
        couch.delete_doc("_users", f"org.couchdb.user:{name}")
