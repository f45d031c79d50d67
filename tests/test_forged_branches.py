"""Forged branches: neither party can shadow a doc of the other that lies outside the share.

On Apache CouchDB the replicator writes a doc created on the other side under an existing id
as a new branch with no common ancestor, calls the guard with `oldDoc = null`, and the longer
branch wins. `tests/test_replication.py` shows that with real replications. These tests
write the branches by hand, as CouchDB's replicator would, with the guard set aside for that
one write, so each shape of forgery is shown on both servers: pouchdb-server silently drops
every `new_edits: false` write to an existing doc in a database with a validate_doc_update.
"""

import json
import re
import threading
import uuid
from contextlib import contextmanager

import pytest

from service.sharing.core.lease import Lease
from service.sharing.core.seal import Seal
from service.sharing.core.store import StateStore
from service.sharing.crossing.mango import matches
from service.sharing.watching.branches import BranchWatch
from service.sharing.watching.followers import LEASE_ID, follow_every
from service.sharing.watching.replications import Replications
from tests.conftest import ADMIN_TOKEN
from tests.helpers import (
    GUARD_ID,
    create_share,
    find_ids,
    replicate,
    replicator_docs,
    wait_for,
)
from tests.servers.broker import BrokerProcess
from tests.servers.demo import ALICE, BOB

RW = {"access": "read-write", "collections": ["c0ll-uuid-1"]}


@contextmanager
def guard_set_aside(couch, db: str):
    """Remove the broker's guard from `db` for the block, then put it back as it was."""
    guard = couch.get(f"{db}/{GUARD_ID}")
    couch.request("DELETE", f"{db}/{GUARD_ID}", params={"rev": guard["_rev"]}).raise_for_status()
    try:
        yield
    finally:
        couch.put(f"{db}/{GUARD_ID}", {k: v for k, v in guard.items() if k != "_rev"})


def write_as_replicator(couch, db: str, docs: list[dict]) -> None:
    """What CouchDB's replicator does past the guard: `new_edits: false`, histories kept."""
    with guard_set_aside(couch, db):
        response = couch.request(
            "POST", f"{db}/_bulk_docs", json={"docs": docs, "new_edits": False}
        )
        response.raise_for_status()


def plant(couch, dbs: list[str], doc_id: str, body: dict, generations: int = 3) -> str:
    """Write one branch of `generations` revisions, unrelated to any other, into `dbs`."""
    ids = [uuid.uuid4().hex for _ in range(generations)]
    rev = f"{generations}-{ids[0]}"
    doc = {**body, "_id": doc_id, "_rev": rev, "_revisions": {"start": generations, "ids": ids}}
    for db in dbs:
        write_as_replicator(couch, db, [doc])
    return rev


def carry(couch, source: str, target: str, doc_id: str) -> None:
    """Replicate one doc, every leaf with its history, from `source` into `target`."""
    rows = couch.get(f"{source}/{doc_id}", open_revs="all", revs="true")
    write_as_replicator(couch, target, [row["ok"] for row in rows])


def leaves(couch, db: str, doc_id: str) -> dict[str, dict]:
    """Every leaf of the doc, deleted ones included, by revision."""
    rows = couch.get(f"{db}/{doc_id}", open_revs="all")
    return {row["ok"]["_rev"]: row["ok"] for row in rows if "ok" in row}


def watch(app) -> list:
    return app.extensions["sharing_broker"].branch_watch().run()


def edit(couch, db: str, doc_id: str, change: dict) -> str:
    doc = couch.get(f"{db}/{doc_id}")
    doc["data"].update(change)
    return couch.put(f"{db}/{doc_id}", doc)["rev"]


def o2r_selector(couch, share_id: str) -> dict:
    return replicator_docs(couch, share_id)[f"sharing-broker-{share_id}-owner-to-recipient"][
        "selector"
    ]


def test_a_forged_branch_over_the_owners_unshared_item_is_removed(client, couch, registered, dbs):
    share = create_share(client, **RW)
    own = couch.get(f"{dbs['alice']}/item-it3m-uuid-2")
    forged_body = {"type": "item", "data": {"collection_id": "c0ll-uuid-1", "name": "mine now"}}
    forged = plant(couch, [dbs["bob"], dbs["alice"]], "item-it3m-uuid-2", forged_body)
    # What CouchDB shows the owner now: the forged branch wins, their own sits in conflict.
    assert couch.get(f"{dbs['alice']}/item-it3m-uuid-2")["_rev"] == forged

    report = client.post("/v1/reconcile").get_json()

    removed = [r for r in report["repaired"] if r["kind"] == "forged branch"]
    assert [(r["database"], r["doc_id"], r["rev"]) for r in removed] == [
        (dbs["alice"], "item-it3m-uuid-2", forged)
    ]
    now = couch.get(f"{dbs['alice']}/item-it3m-uuid-2", conflicts="true")
    assert now == own  # the owner's own version wins again, with no conflict left
    events = client.get(f"/v1/shares/{share['id']}/events").get_json()["items"]
    removals = [e["outcome"] for e in events if e["action"] == "remove forged branch"]
    assert removals == [
        f"removed forged revision {forged} of item-it3m-uuid-2 in the owner's database"
    ]


def test_the_forged_leaf_ends_in_a_tombstone_that_travels_back(app, client, couch, registered, dbs):
    share = create_share(client, **RW)
    forged_body = {"type": "item", "data": {"collection_id": "c0ll-uuid-1"}}
    plant(couch, [dbs["bob"], dbs["alice"]], "item-it3m-uuid-2", forged_body)

    assert len(watch(app)) == 1

    rows = couch.get(f"{dbs['alice']}/item-it3m-uuid-2", open_revs="all", revs="true")
    tombstones = [row["ok"] for row in rows if row["ok"].get("_deleted")]
    assert len(tombstones) == 1
    # The owner->recipient selector carries the tombstone, which ends the forgery there too.
    assert matches(o2r_selector(couch, share["id"]), tombstones[0])
    write_as_replicator(couch, dbs["bob"], tombstones)
    assert couch.request("GET", f"{dbs['bob']}/item-it3m-uuid-2").status_code == 404


def test_the_owner_cannot_shadow_the_recipients_own_item(app, client, couch, registered, dbs):
    mine = {"type": "item", "data": {"collection_id": "b0b-coll-1", "name": "Bob's diary"}}
    own_rev = couch.put(f"{dbs['bob']}/item-b0b-diary", mine)["rev"]
    create_share(client, access="read", collections=None)
    forged_body = {"type": "item", "data": {"collection_id": "c0ll-uuid-1", "name": "read me"}}
    plant(couch, [dbs["alice"], dbs["bob"]], "item-b0b-diary", forged_body)

    removed = watch(app)

    assert [(r.database, r.doc_id) for r in removed] == [(dbs["bob"], "item-b0b-diary")]
    now = couch.get(f"{dbs['bob']}/item-b0b-diary", conflicts="true")
    assert now["_rev"] == own_rev
    assert now["data"]["name"] == "Bob's diary"


def test_a_collection_id_of_the_recipients_own_is_refused(client, couch, registered, dbs):
    lookalike = {"type": "collection", "data": {"name": "Books", "config_uuid": ALICE}}
    couch.put(f"{dbs['alice']}/collection-b0b-coll-1", lookalike)

    response = client.post(
        "/v1/shares",
        json={
            "owner": ALICE,
            "recipient": BOB,
            "access": "read-write",
            "collections": ["b0b-coll-1"],
        },
    )

    assert response.status_code == 409
    assert response.get_json()["errors"]["collections"]
    assert "b0b-coll-1" in response.get_json()["detail"]
    assert client.get("/v1/shares").get_json()["items"] == []


def test_patch_refuses_a_collection_id_of_the_recipients_own(client, couch, registered, dbs):
    share = create_share(client, **RW)
    lookalike = {"type": "collection", "data": {"name": "Books", "config_uuid": ALICE}}
    couch.put(f"{dbs['alice']}/collection-b0b-coll-1", lookalike)
    etag = client.get(f"/v1/shares/{share['id']}").headers["ETag"]

    response = client.patch(
        f"/v1/shares/{share['id']}",
        json={"collections": ["c0ll-uuid-1", "b0b-coll-1"]},
        headers={"If-Match": etag},
    )

    assert response.status_code == 409
    assert client.get(f"/v1/shares/{share['id']}").get_json()["collections"] == ["c0ll-uuid-1"]


def test_a_copy_from_an_earlier_share_is_not_a_clash(client, couch, registered, dbs):
    # A revoke without purge leaves the recipient a copy, history and all.
    replicate(couch, dbs["alice"], dbs["bob"], {"_id": {"$eq": "collection-c0ll-uuid-1"}})

    assert create_share(client, **RW)["status"] == "active"


def a_relabelled_copy_of_bobs_collection(couch, dbs) -> None:
    """Bob once shared his Books with Alice and revoked, leaving her a copy; Alice then
    labels the copy as hers. It still shares Bob's history."""
    replicate(couch, dbs["bob"], dbs["alice"], {"_id": {"$eq": "collection-b0b-coll-1"}})
    copy = couch.get(f"{dbs['alice']}/collection-b0b-coll-1")
    copy["data"]["config_uuid"] = ALICE
    couch.put(f"{dbs['alice']}/collection-b0b-coll-1", copy)


def test_a_relabelled_copy_of_the_recipients_collection_is_refused(client, couch, registered, dbs):
    a_relabelled_copy_of_bobs_collection(couch, dbs)
    body = {"owner": ALICE, "recipient": BOB, "access": "read-write", "collections": ["b0b-coll-1"]}
    response = client.post("/v1/shares", json=body)
    assert response.status_code == 409, response.get_json()
    assert "b0b-coll-1" in response.get_json()["detail"]


def test_a_relabelled_copy_of_the_recipients_collection_stays_out_of_the_way_back(
    client, couch, registered, dbs
):
    """With all collections, Bob's own items in Books would flow to Alice."""
    a_relabelled_copy_of_bobs_collection(couch, dbs)
    share = create_share(client, access="read-write", collections=None)
    back = replicator_docs(couch, share["id"])[f"sharing-broker-{share['id']}-recipient-to-owner"]
    assert "b0b-coll-1" not in json.dumps(back["selector"])
    assert "c0ll-uuid-1" in json.dumps(back["selector"])


def test_concurrent_edits_of_a_shared_item_are_left_to_couchdb(app, client, couch, registered, dbs):
    share = create_share(client, **RW)
    replicate(couch, dbs["alice"], dbs["bob"], o2r_selector(couch, share["id"]))
    edit(couch, dbs["alice"], "item-it3m-uuid-1", {"name": "Alice's edit"})
    bobs = edit(couch, dbs["bob"], "item-it3m-uuid-1", {"name": "Bob's edit"})
    carry(couch, dbs["bob"], dbs["alice"], "item-it3m-uuid-1")
    assert bobs in leaves(couch, dbs["alice"], "item-it3m-uuid-1")

    assert watch(app) == []
    assert len(leaves(couch, dbs["alice"], "item-it3m-uuid-1")) == 2


def test_an_edit_of_an_item_that_left_the_share_loses(app, client, couch, registered, dbs):
    share = create_share(client, **RW)
    replicate(couch, dbs["alice"], dbs["bob"], o2r_selector(couch, share["id"]))
    moved = edit(couch, dbs["alice"], "item-it3m-uuid-1", {"collection_id": "c0ll-uuid-2"})
    for n in range(3):  # a longer branch, which would win
        bobs = edit(couch, dbs["bob"], "item-it3m-uuid-1", {"name": f"Bob's edit {n}"})
    carry(couch, dbs["bob"], dbs["alice"], "item-it3m-uuid-1")

    removed = watch(app)

    assert [(r.doc_id, r.rev) for r in removed] == [("item-it3m-uuid-1", bobs)]
    assert couch.get(f"{dbs['alice']}/item-it3m-uuid-1")["_rev"] == moved


def test_a_quiet_pass_reads_one_changes_feed_per_database(
    app, client, couch, registered, dbs, calls
):
    create_share(client, **RW)
    branch_watch = app.extensions["sharing_broker"].branch_watch()
    branch_watch.run()

    def quiet() -> bool:  # nothing new since the last pass: no checkpoint moved
        calls.calls.clear()
        assert branch_watch.run() == []
        return all(method == "GET" for method, _ in calls.calls)

    wait_for(quiet, "a pass once replication has settled", couch=couch)
    assert sorted(calls.calls) == sorted(
        [
            ("GET", "_replicator/_changes"),  # what changed there since the last pass
            ("GET", f"{dbs['alice']}/_changes"),
            ("GET", f"{dbs['bob']}/_changes"),
        ]
    )


def test_a_pass_when_no_database_moved_sends_no_request(app, client, registered, calls):
    create_share(client, **RW)
    branch_watch = app.extensions["sharing_broker"].branch_watch()
    branch_watch.run()
    calls.calls.clear()

    assert branch_watch.run(changed=set()) == []  # as `_db_updates` tells it

    assert calls.calls == []


def test_only_one_holder_has_the_watch_lease(app, couch, settings):
    broker = app.extensions["sharing_broker"]
    first = Lease(broker.couch, settings.state_db, LEASE_ID, 30)
    second = Lease(broker.couch, settings.state_db, LEASE_ID, 30)

    assert first.take()
    assert not second.take()
    assert first.hold()
    first.drop()
    assert second.take()


def test_another_brokers_replications_are_not_watched(app, client, registered, dbs):
    create_share(client, **RW)
    broker = app.extensions["sharing_broker"]
    another = StateStore(broker.couch, "another_broker", Seal("another-key" * 4))
    other = BranchWatch(broker.sites, another, Replications(broker.sites, another.db))

    assert other.inflows() == []
    ours = broker.branch_watch().inflows()
    assert {(i.source, i.target) for i in ours} == {
        (("default", dbs["alice"]), ("default", dbs["bob"])),
        (("default", dbs["bob"]), ("default", dbs["alice"])),
    }


def test_a_database_that_fails_is_judged_again_next_pass(
    app, client, couch, faults, dbs, registered
):
    create_share(client, **RW)
    own = couch.get(f"{dbs['alice']}/item-it3m-uuid-2")
    body = {"type": "item", "data": {"collection_id": "c0ll-uuid-1"}}
    plant(couch, [dbs["bob"], dbs["alice"]], "item-it3m-uuid-2", body)
    changes = re.compile(re.escape(f"{couch.url}/{dbs['alice']}/_changes"))
    faults.add("GET", changes, status=500, json={"error": "unknown_error", "reason": "injected"})

    assert watch(app) == []
    faults.remove("GET", changes)

    assert [r.doc_id for r in watch(app)] == ["item-it3m-uuid-2"]
    assert couch.get(f"{dbs['alice']}/item-it3m-uuid-2") == own


def test_a_long_lived_watch_sees_shares_made_after_it_started(app, client, couch, dbs, registered):
    branch_watch = app.extensions["sharing_broker"].branch_watch()
    assert branch_watch.run() == []
    create_share(client, **RW)
    body = {"type": "item", "data": {"collection_id": "c0ll-uuid-1"}}
    plant(couch, [dbs["bob"], dbs["alice"]], "item-it3m-uuid-2", body)

    assert [r.doc_id for r in branch_watch.run()] == ["item-it3m-uuid-2"]


@pytest.mark.pouchdb_only  # on Apache CouchDB: tests/test_replication.py
def test_without_db_updates_every_database_is_read(app, dbs):
    updates = app.extensions["sharing_broker"].database_updates()

    assert updates.changed() is None  # pouchdb-server answers 400
    assert updates.changed() is None


def test_the_loop_runs_every_pass_only_while_it_holds_the_lease(app, settings):
    couch = app.extensions["sharing_broker"].couch
    seen, stop = [], threading.Event()

    class Broken:
        def run(self, changed):
            raise KeyError("a bug in one pass")

    class Pass:
        def run(self, changed):
            seen.append(changed)
            stop.set()

    other = Lease(couch, settings.state_db, LEASE_ID, 30)
    assert other.take()  # another worker holds it: the loop waits
    ours = Lease(couch, settings.state_db, LEASE_ID, 30)
    loop = threading.Thread(
        target=follow_every,
        args=(
            0.05,
            [Broken(), Pass()],
            ours,
            app.extensions["sharing_broker"].database_updates(),
            stop,
        ),
    )
    loop.start()
    assert not stop.wait(0.5) and seen == []
    other.drop()
    assert stop.wait(5)
    loop.join(5)

    assert seen == [None]  # a first pass (or a server without _db_updates) reads every database


def test_all_collections_leave_a_lookalike_out_of_the_way_back(client, couch, registered, dbs):
    lookalike = {"type": "collection", "data": {"name": "Books", "config_uuid": ALICE}}
    couch.put(f"{dbs['alice']}/collection-b0b-coll-1", lookalike)

    share = create_share(client, access="read-write", collections=None)

    r2o = replicator_docs(couch, share["id"])[f"sharing-broker-{share['id']}-recipient-to-owner"]
    back = find_ids(couch, dbs["bob"], r2o["selector"])
    assert "collection-b0b-coll-1" not in back  # Bob's own Books stay his
    assert matches(r2o["selector"], item_in("c0ll-uuid-1"))
    assert not matches(r2o["selector"], item_in("b0b-coll-1"))


def item_in(collection: str) -> dict:
    return {"_id": f"item-in-{collection}", "type": "item", "data": {"collection_id": collection}}


def test_a_restarted_broker_removes_a_forged_branch_within_an_interval(
    client, couch, settings, registered, dbs
):
    """A graceful stop gives the followers' lease up, so a rolling deploy leaves no window
    in which nobody watches."""
    create_share(client, **RW)
    lease = f"{settings.state_db}/{LEASE_ID}"
    first = BrokerProcess(couch, settings.state_db, ADMIN_TOKEN, BROKER_FOLLOW_INTERVAL="1")
    try:
        wait_for(lambda: couch.request("GET", lease).ok, "the first broker taking the lease")
    finally:
        first.stop()
    assert couch.request("GET", lease).status_code == 404  # given up, not left to lapse

    second = BrokerProcess(couch, settings.state_db, ADMIN_TOKEN, BROKER_FOLLOW_INTERVAL="1")
    try:
        own = couch.get(f"{dbs['alice']}/item-it3m-uuid-2")
        body = {"type": "item", "data": {"collection_id": "c0ll-uuid-1"}}
        plant(couch, [dbs["bob"], dbs["alice"]], "item-it3m-uuid-2", body)
        wait_for(
            lambda: couch.get(f"{dbs['alice']}/item-it3m-uuid-2") == own,
            "the forged branch removed by the new broker",
            seconds=5,
        )
    finally:
        second.stop()
