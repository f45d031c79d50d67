"""What Apache CouchDB's replicator really does with the broker's docs.

Each test lets a real replication run and waits for it by bounded polling: documents cross
with their attachments, deletions arrive, edits come back in read-write sharing, nothing
crosses after a revoke, a purge takes only the owner's copies, a re-share after a purge
brings them back, and forged branches written by a real replication past the real guard
are taken out by the watch.
"""

import time

import pytest

from service.sharing.placing.guard import member_role
from service.sharing.watching.updates import DatabaseUpdates
from tests.conftest import CAROL
from tests.helpers import (
    GUARD_ID,
    create_share,
    doc_state,
    find_ids,
    replicator_docs,
    revisions,
    scheduler_doc,
    wait_for,
    wait_for_docs,
    withdrawn_by,
)
from tests.servers.demo import ALICE, BOB
from tests.test_rules import CONTAINERS, item_with_picture
from tests.test_selectors import COLLECTION_1

pytestmark = pytest.mark.couchdb

RW = {"access": "read-write", "collections": ["c0ll-uuid-1"]}
DB_SHARING = f"db_sharing-{ALICE}--{BOB}"
ITEM, UNSHARED_ITEM = "item-it3m-uuid-1", "item-it3m-uuid-2"


def edit(couch, db: str, doc_id: str, times: int = 1, **change) -> str:
    """Change the doc's data `times` times, as its own database's user would; the last rev."""
    for _ in range(times):
        doc = couch.get(f"{db}/{doc_id}")
        doc["data"].update(change)
        rev = couch.put(f"{db}/{doc_id}", doc)["rev"]
    return rev


def leaves(couch, db: str, doc_id: str) -> set[str]:
    """The revisions of the doc's live leaves."""
    rows = couch.get(f"{db}/{doc_id}", open_revs="all")
    return {row["ok"]["_rev"] for row in rows if "ok" in row and not row["ok"].get("_deleted")}


def quiet(updates: DatabaseUpdates) -> bool:
    """No database moved for a second: `_db_updates` reports in batches."""
    if updates.changed():
        return False
    time.sleep(1.0)
    return not updates.changed()


def watch(app) -> list:
    return app.extensions["sharing_broker"].branch_watch().run()


def attachments(couch, db: str, doc_id: str) -> dict:
    doc = couch.get(f"{db}/{doc_id}", attachments="true")
    return {name: (a["digest"], a["data"]) for name, a in doc["_attachments"].items()}


def test_the_shared_collection_crosses_with_its_pictures_and_nothing_else(
    client, couch, registered, dbs
):
    share = create_share(client)
    wait_for_docs(couch, dbs["bob"], COLLECTION_1, "collection 1 at Bob's")

    image = "zz20-image-1mg-uuid-1"
    assert attachments(couch, dbs["bob"], image) == attachments(couch, dbs["alice"], image)
    own = {"0000-config", "collection-b0b-coll-1", GUARD_ID}
    assert set(couch.all_docs(dbs["bob"])) == own | COLLECTION_1
    assert couch.get(f"{dbs['bob']}/0000-config")["uuid"] == BOB
    o2r = share["replications"][0]["id"]
    status = client.get(f"/v1/shares/{share['id']}").get_json()["replications"][0]
    assert status["replication_status"]["state"] == scheduler_doc(couch, o2r)["state"]
    wait_for(
        lambda: (scheduler_doc(couch, o2r).get("info") or {}).get("docs_written") == 4,
        "the scheduler counting the 4 docs written",
        couch=couch,
    )


def test_a_deletion_at_the_owner_arrives_at_the_recipient(client, couch, registered, dbs):
    create_share(client)
    wait_for(lambda: doc_state(couch, dbs["bob"], ITEM) == "live", "the item at Bob's", couch=couch)

    couch.delete_doc(dbs["alice"], ITEM)

    wait_for(
        lambda: doc_state(couch, dbs["bob"], ITEM) == "deleted",
        "the deletion at Bob's",
        couch=couch,
    )


def test_in_read_write_the_recipients_edit_reaches_the_owner(client, couch, registered, dbs):
    create_share(client, **RW)
    wait_for_docs(couch, dbs["bob"], {ITEM, DB_SHARING}, "the item and db_sharing")

    rev = edit(couch, dbs["bob"], ITEM, name="Bob's edit")

    wait_for(
        lambda: couch.get(f"{dbs['alice']}/{ITEM}")["_rev"] == rev,
        "Bob's edit at Alice's",
        couch=couch,
    )


def test_in_read_only_the_recipients_edit_stays_with_the_recipient(
    client, couch, registered, dbs, people
):
    """Proven against a read-write share to Carol made after it: her edits do arrive."""
    create_share(client)
    wait_for(lambda: doc_state(couch, dbs["bob"], ITEM) == "live", "the item at Bob's", couch=couch)
    bobs = edit(couch, dbs["bob"], ITEM, name="Bob's edit")

    assert client.post("/v1/databases", json={"database": people["carol_db"]}).status_code == 201
    create_share(client, recipient=CAROL, **RW)
    carol = people["carol_db"]
    wait_for(lambda: doc_state(couch, carol, ITEM) == "live", "the item at Carol's", couch=couch)
    carols = edit(couch, carol, ITEM, name="Carol's edit")
    wait_for(
        lambda: carols in leaves(couch, dbs["alice"], ITEM), "Carol's edit at Alice's", couch=couch
    )

    assert bobs not in leaves(couch, dbs["alice"], ITEM)


def test_after_a_revoke_nothing_more_crosses(client, couch, registered, dbs, people):
    """Proven against a share to Carol that stays: the new item reaches her, not Bob."""
    share = create_share(client)
    assert client.post("/v1/databases", json={"database": people["carol_db"]}).status_code == 201
    create_share(client, recipient=CAROL)
    wait_for(lambda: doc_state(couch, dbs["bob"], ITEM) == "live", "the item at Bob's", couch=couch)

    assert client.delete(f"/v1/shares/{share['id']}").status_code == 200
    o2r = share["replications"][0]["id"]
    wait_for(lambda: scheduler_doc(couch, o2r) == {}, "the replication job gone", couch=couch)
    late = {"_id": "item-late", "type": "item", "data": {"collection_id": "c0ll-uuid-1"}}
    couch.put(f"{dbs['alice']}/item-late", late)

    carol = people["carol_db"]
    wait_for(
        lambda: doc_state(couch, carol, "item-late") == "live",
        "the new item at Carol's",
        couch=couch,
    )
    assert doc_state(couch, dbs["bob"], "item-late") == "missing"
    assert doc_state(couch, dbs["bob"], ITEM) == "live"  # a revoke without purge keeps copies


def test_revoke_with_purge_takes_the_owners_copies_and_leaves_the_recipients_own(
    client, couch, registered, dbs
):
    share = create_share(client, **RW)
    wait_for_docs(couch, dbs["bob"], COLLECTION_1 | {DB_SHARING}, "the share")
    bobs_item = {
        "_id": "item-b0b-item-1",
        "type": "item",
        "data": {"name": "Bob's mug", "collection_id": "c0ll-uuid-1", "config_uuid": BOB},
    }
    couch.put(f"{dbs['bob']}/item-b0b-item-1", bobs_item)
    wait_for_docs(couch, dbs["alice"], {"item-b0b-item-1"}, "Bob's mug at Alice's")
    alice_before = revisions(couch, dbs["alice"])

    assert client.delete(f"/v1/shares/{share['id']}?purge=true").status_code == 200

    for doc_id in COLLECTION_1 | {DB_SHARING}:  # a tombstone, which reaches Bob's devices
        assert withdrawn_by(couch, dbs["bob"], doc_id) == share["id"], doc_id
    assert doc_state(couch, dbs["bob"], "item-b0b-item-1") == "live"
    assert doc_state(couch, dbs["bob"], "collection-b0b-coll-1") == "live"
    # Alice's database loses only the db_sharing doc: Bob's tombstones never cross.
    alice_before.pop(DB_SHARING)
    assert revisions(couch, dbs["alice"]) == alice_before


def test_a_share_made_again_after_a_purge_brings_the_docs_back(app, client, couch, registered, dbs):
    """Bob's database already knows the revisions the new share carries, under the old
    share's tombstones: the followers write the owner's version over those."""
    share = create_share(client)
    wait_for_docs(couch, dbs["bob"], COLLECTION_1, "collection 1 at Bob's")
    assert client.delete(f"/v1/shares/{share['id']}?purge=true").status_code == 200
    assert not set(couch.all_docs(dbs["bob"])) & COLLECTION_1

    create_share(client)
    watch = app.extensions["sharing_broker"].branch_watch()

    def back() -> bool:
        watch.run()
        return set(couch.all_docs(dbs["bob"])) >= COLLECTION_1

    wait_for(back, "collection 1 at Bob's again", couch=couch)


def test_a_recipients_forged_branch_made_by_replication_is_removed(
    app, client, couch, registered, dbs
):
    create_share(client, **RW)
    own = couch.get(f"{dbs['alice']}/{UNSHARED_ITEM}")
    # Bob writes a doc under the id of Alice's unshared item, into the shared collection,
    # with a longer history than hers. The real replication carries it to Alice, past the
    # real guard (which sees no old doc), and there it wins.
    forged = {"type": "item", "data": {"collection_id": "c0ll-uuid-1", "name": "mine now"}}
    couch.put(f"{dbs['bob']}/{UNSHARED_ITEM}", forged)
    rev = edit(couch, dbs["bob"], UNSHARED_ITEM, times=3, name="mine now")
    wait_for(
        lambda: rev in leaves(couch, dbs["alice"], UNSHARED_ITEM),
        "the forgery at Alice's",
        couch=couch,
    )
    assert couch.get(f"{dbs['alice']}/{UNSHARED_ITEM}")["_rev"] == rev

    removed = watch(app)

    assert [(r.database, r.doc_id, r.rev) for r in removed] == [(dbs["alice"], UNSHARED_ITEM, rev)]
    assert couch.get(f"{dbs['alice']}/{UNSHARED_ITEM}", conflicts="true") == own
    # The tombstone travels back and ends the forgery at Bob's too.
    wait_for(
        lambda: doc_state(couch, dbs["bob"], UNSHARED_ITEM) == "deleted",
        "the tombstone at Bob's",
        couch=couch,
    )


def test_an_owners_forged_branch_over_the_recipients_own_doc_is_removed(
    app, client, couch, registered, dbs
):
    mine = {"type": "item", "data": {"collection_id": "b0b-coll-1", "name": "Bob's diary"}}
    own_rev = couch.put(f"{dbs['bob']}/item-b0b-diary", mine)["rev"]
    create_share(client, access="read", collections=None)
    forged = {"type": "item", "data": {"collection_id": "c0ll-uuid-1", "name": "read me"}}
    couch.put(f"{dbs['alice']}/item-b0b-diary", forged)
    rev = edit(couch, dbs["alice"], "item-b0b-diary", times=3, name="read me")
    wait_for(
        lambda: rev in leaves(couch, dbs["bob"], "item-b0b-diary"),
        "the forgery at Bob's",
        couch=couch,
    )

    removed = watch(app)

    assert [(r.database, r.doc_id) for r in removed] == [(dbs["bob"], "item-b0b-diary")]
    now = couch.get(f"{dbs['bob']}/item-b0b-diary", conflicts="true")
    assert (now["_rev"], now["data"]["name"]) == (own_rev, "Bob's diary")


def test_an_edit_of_an_item_that_left_the_share_loses(app, client, couch, registered, dbs):
    create_share(client, **RW)
    wait_for(lambda: doc_state(couch, dbs["bob"], ITEM) == "live", "the item at Bob's", couch=couch)
    moved = edit(couch, dbs["alice"], ITEM, collection_id="c0ll-uuid-2")
    bobs = edit(couch, dbs["bob"], ITEM, times=3, name="Bob's edit")  # a longer branch
    wait_for(
        lambda: bobs in leaves(couch, dbs["alice"], ITEM), "Bob's edit at Alice's", couch=couch
    )

    removed = watch(app)

    assert [(r.doc_id, r.rev) for r in removed] == [(ITEM, bobs)]
    assert couch.get(f"{dbs['alice']}/{ITEM}")["_rev"] == moved


def test_with_db_updates_a_pass_reads_only_the_databases_that_moved(
    app, client, couch, registered, dbs, calls
):
    create_share(client, **RW)
    wait_for_docs(couch, dbs["bob"], COLLECTION_1 | {DB_SHARING}, "the share")
    updates = app.extensions["sharing_broker"].database_updates()
    assert updates.changed() is None  # the first look only learns where the feed is
    wait_for(lambda: quiet(updates), "a quiet _db_updates feed", couch=couch)
    note = {"_id": "item-garage-note", "type": "item", "data": {"collection_id": "c0ll-uuid-2"}}
    couch.put(f"{dbs['alice']}/item-garage-note", note)  # unshared: only Alice's moves

    changed = wait_for(updates.changed, "Alice's database in _db_updates", couch=couch)
    calls.calls.clear()
    app.extensions["sharing_broker"].branch_watch().run(changed)

    assert changed == {dbs["alice"]}
    changes_read = {path for _, path in calls.calls if path.endswith("/_changes")}
    # and `_replicator`'s, for the replicator docs that changed since the last pass
    assert changes_read == {f"{dbs['alice']}/_changes", "_replicator/_changes"}


def test_pictures_of_an_item_that_comes_to_match_follow_it(app, client, couch, registered, dbs):
    share = create_share(client, collections=["c0ll-uuid-1"], rules=CONTAINERS)
    follow = app.extensions["sharing_broker"].rule_follow()
    follow.run()  # first look: followed from here on
    new = item_with_picture(7, "container")
    couch.request("POST", f"{dbs['alice']}/_bulk_docs", json={"docs": new}).raise_for_status()
    item_id, link_id, image_id = (doc["_id"] for doc in new)
    wait_for(
        lambda: doc_state(couch, dbs["bob"], item_id) == "live",
        "the new item at Bob's",
        couch=couch,
    )
    assert doc_state(couch, dbs["bob"], image_id) == "missing"  # not in the id lists yet

    assert follow.run() == {share["id"]: ["share_user", "replication:owner-to-recipient"]}

    selector = replicator_docs(couch, share["id"])[share["replications"][0]["id"]]["selector"]
    assert {link_id, image_id} <= find_ids(couch, dbs["alice"], selector)
    wait_for_docs(couch, dbs["bob"], {link_id, image_id}, "the pictures at Bob's")


def share_with_carol(client, people) -> dict:
    assert client.post("/v1/databases", json={"database": people["carol_db"]}).status_code == 201
    return create_share(client, recipient=CAROL)


def test_a_list_tells_running_and_crashing_replications_apart(
    app, client, couch, registered, dbs, people
):
    running, crashing = create_share(client), share_with_carol(client, people)
    ok, broken = running["replications"][0]["id"], crashing["replications"][0]["id"]
    couch.delete_doc("_users", f"org.couchdb.user:sharing-broker-{crashing['id']}")
    wait_for(
        lambda: scheduler_doc(couch, broken).get("state") == "crashing", "a crash", couch=couch
    )
    # A loaded server may drop a connection mid-checkpoint: the healthy job crashes too, and
    # CouchDB starts it again after its first backoff, 30 s.
    wait_for(lambda: scheduler_doc(couch, ok).get("state") == "running", "running", 90, couch=couch)

    assert app.extensions["sharing_broker"].state_recorder().run() is not None

    listed = client.get(f"/v1/shares?database={ALICE}&with_status=true").get_json()["items"]
    states = {s["id"]: s["replications"][0]["replication_status"] for s in listed}
    assert states[running["id"]]["state"] == "running" and states[running["id"]]["as_of"]
    assert states[crashing["id"]]["state"] == "crashing" and states[crashing["id"]]["error"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'sharing_broker_replications{server="default",state="crashing"} 1.0' in metrics


def test_reconcile_repairs_and_restarts_a_crashing_replication(
    client, couch, registered, dbs, people
):
    share = share_with_carol(client, people)
    carol = people["carol_db"]
    o2r = share["replications"][0]["id"]
    wait_for(lambda: doc_state(couch, carol, ITEM) == "live", "the item at Carol's", couch=couch)
    security = couch.get(f"{carol}/_security")
    security["members"]["roles"].remove(member_role(carol))  # by hand: share users lose it
    couch.put(f"{carol}/_security", security)
    late = {"_id": "item-late", "type": "item", "data": {"collection_id": "c0ll-uuid-1"}}
    couch.put(f"{dbs['alice']}/item-late", late)
    wait_for(lambda: scheduler_doc(couch, o2r).get("state") == "crashing", "a crash", couch=couch)

    report = client.post("/v1/reconcile").get_json()

    assert report["errors"] == []
    kinds = {(r["kind"], r.get("part"), r["action"]) for r in report["repaired"]}
    assert ("missing, changed or failed part", "access:recipient", "rewrote it") in kinds
    assert ("crashing replication", None, "restarted it") in kinds
    # Far sooner than CouchDB's 30-second backoff after a crash.
    wait_for(
        lambda: doc_state(couch, carol, "item-late") == "live",
        "the new item at Carol's",
        seconds=15,
        couch=couch,
    )
