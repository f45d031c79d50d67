"""What a share does to the users' phones and tablets, played by PouchDB 8 in Node.

Each device syncs with its user's own database, with the user's own credentials, as the
Inventory app's DBSyncManager does: log in, a start-up sync, then live sync; the older app
unfiltered, the newer one through `_design/app_sync_v0`. A device is a replica with its own
checkpoints: only revisions reach it, tombstones included, and it pushes back whatever its
push checkpoint has not passed. The broker runs in on-change mode with its followers, as
served.
"""

import base64
import dataclasses
import time

import pytest

from service.config import ON_CHANGE
from tests.device import Device, harness_ready
from tests.helpers import create_share, doc_state, revisions, wait_for, wait_for_docs
from tests.servers.demo import ALICE, BOB
from tests.test_patch import patch

pytestmark = pytest.mark.couchdb

DB_SHARING = f"db_sharing-{ALICE}--{BOB}"
ITEM = "item-it3m-uuid-1"
SHARED = {
    "collection-c0ll-uuid-1",
    ITEM,
    "item_image-it3m-uuid-1-1mg-uuid-1",
    "zz20-image-1mg-uuid-1",
}
UNSHARED = {"collection-c0ll-uuid-2", "item-it3m-uuid-2", "integration-1ntg-uuid-1"}
BOBS_OWN = {"0000-config", "collection-b0b-coll-1"}
# The newer app's filters, as it installs them (DBSyncManager.tsx).
APP_SYNC_DDOC = {
    "_id": "_design/app_sync_v0",
    "filters": {
        "only_primary": "function (doc) { return !doc._id.startsWith('zz'); }",
        "only_images": "function (doc) { return doc._id.startsWith('zz20-image'); }",
    },
}
APPS = ["older app, unfiltered", "newer app, filtered"]


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, replication_mode=ON_CHANGE, max_runs=20)


@pytest.fixture(params=APPS)
def app_version(request) -> str:
    return request.param


@pytest.fixture
def device(tmp_path, couch, dbs, people, app_version, followers):
    """Make a device of Alice's or Bob's, running the app version under test."""
    harness_ready()
    filtered = app_version == APPS[1]
    if filtered:  # the app installs it; here the user is a member, not a database admin
        for person in ("alice", "bob"):
            couch.put(f"{dbs[person]}/{APP_SYNC_DDOC['_id']}", APP_SYNC_DDOC)

    def make(person: str, name: str) -> Device:
        url = f"{couch.url}/{dbs[person]}"
        return Device(tmp_path / f"{person}-{name}", url, people[person], filtered)

    return make


def basic(user: tuple[str, str]) -> dict:
    token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def live_ids(couch, db: str, ids: set[str]) -> set[str]:
    return {doc_id for doc_id in ids if doc_state(couch, db, doc_id) == "live"}


def own_revisions(couch, db: str) -> dict[str, str]:
    docs = couch.all_docs(db)
    return {doc_id: docs[doc_id]["_rev"] for doc_id in BOBS_OWN}


def read_write_share(client, couch, dbs) -> dict:
    share = create_share(client, access="read-write")
    wait_for_docs(couch, dbs["bob"], SHARED | {DB_SHARING}, "the share at Bob's")
    return share


def content(doc: dict) -> dict:
    """A doc without its revision; attachments by digest (their `revpos` moves)."""
    body = {k: v for k, v in doc.items() if k not in ("_rev", "_attachments")}
    attachments = doc.get("_attachments") or {}
    return {**body, "_attachments": {n: a["digest"] for n, a in attachments.items()}}


def clean(answer: dict) -> bool:
    """What the app counts a successful start-up sync, told of nothing refused."""
    return answer["complete"] and not answer["denied"] and not answer["errors"]


def test_the_first_sync_brings_the_share_and_nothing_else(client, couch, dbs, device):
    read_write_share(client, couch, dbs)
    phone = device("bob", "phone")
    assert clean(phone.sync())
    docs = phone.docs()
    assert SHARED | {DB_SHARING} | BOBS_OWN <= set(docs)
    assert not set(docs) & UNSHARED
    assert docs["0000-config"]["uuid"] == BOB  # Bob's own, never Alice's
    bobs_design = {i for i in couch.all_docs(dbs["bob"]) if i.startswith("_design/")}
    assert {i for i in docs if i.startswith("_design/")} <= bobs_design
    assert set(docs["zz20-image-1mg-uuid-1"]["_attachments"]) == {"thumbnail-128", "image-1440"}
    assert docs[DB_SHARING]["data"]["permissions"] == ["read", "write"]  # editing unlocked


def test_an_edit_under_a_read_only_share_is_undone_on_every_device(client, couch, dbs, device):
    share = create_share(client)
    wait_for_docs(couch, dbs["bob"], SHARED, "the share at Bob's")
    bobs_own = own_revisions(couch, dbs["bob"])
    alices_item = couch.get(f"{dbs['alice']}/{ITEM}")
    phone, tablet = device("bob", "phone"), device("bob", "tablet")
    assert clean(phone.sync()) and clean(tablet.sync())

    phone.edit(ITEM, name="Bob's blender")
    phone.edit(ITEM, name="Bob's blender, again")  # a longer history than the owner's
    assert clean(phone.sync())  # the app is told nothing: Bob's database takes the edit
    undone = phone.live({"id": ITEM, "path": "data.name", "equals": "Blender"})
    assert undone["met"], undone
    assert not phone.docs()[ITEM].get("_conflicts")
    assert clean(tablet.sync())
    assert tablet.docs()[ITEM]["data"] == alices_item["data"]
    bobs_item = couch.get(f"{dbs['bob']}/{ITEM}", conflicts="true")
    assert bobs_item["data"] == alices_item["data"] and "_conflicts" not in bobs_item
    assert couch.get(f"{dbs['alice']}/{ITEM}")["_rev"] == alices_item["_rev"]  # untouched

    # The owner's next edit wins on Bob's side too, though his branch is the longer one.
    alices_item["data"]["name"] = "Blender 2000"
    couch.put(f"{dbs['alice']}/{ITEM}", alices_item)
    arrived = phone.live({"id": ITEM, "path": "data.name", "equals": "Blender 2000"})
    assert arrived["met"], arrived
    assert not phone.docs()[ITEM].get("_conflicts")
    wait_for(
        lambda: "_conflicts" not in couch.get(f"{dbs['bob']}/{ITEM}", conflicts="true"),
        "Bob's database to show the owner's edit alone",
    )
    assert own_revisions(couch, dbs["bob"]) == bobs_own
    events = client.get(f"/v1/shares/{share['id']}/events").get_json()["items"]
    kept = [e for e in events if e["action"] == "keep owner's version"]
    assert kept and all(dbs["bob"] not in e["outcome"] for e in kept)


def test_a_deletion_under_a_read_only_share_is_undone(client, couch, dbs, device):
    create_share(client)
    wait_for_docs(couch, dbs["bob"], SHARED, "the share at Bob's")
    phone = device("bob", "phone")
    assert clean(phone.sync())
    phone.remove(ITEM)
    assert clean(phone.sync())
    back = phone.live({"id": ITEM, "path": "data.name", "equals": "Blender"})
    assert back["met"], back


@pytest.mark.parametrize("ender", ["owner revokes", "recipient leaves"])
def test_an_end_with_purge_reaches_every_device_and_nothing_comes_back(
    app, client, couch, dbs, people, device, ender
):
    share = read_write_share(client, couch, dbs)
    bobs_own = own_revisions(couch, dbs["bob"])
    alice_before = {i: r for i, r in revisions(couch, dbs["alice"]).items() if i != DB_SHARING}
    phone, tablet = device("bob", "phone"), device("bob", "tablet")
    assert clean(phone.sync())
    tablet.pull()  # the app closed before its push: the tablet's push checkpoint lags
    assert SHARED | {DB_SHARING} <= set(tablet.docs())

    caller = basic(people["alice" if ender == "owner revokes" else "bob"])
    response = app.test_client().delete(f"/v1/shares/{share['id']}?purge=true", headers=caller)
    assert response.status_code == 200, response.get_json()
    assert live_ids(couch, dbs["bob"], SHARED | {DB_SHARING}) == set()

    for device_ in (phone, tablet, phone, tablet):  # and again: nothing comes back
        assert clean(device_.sync())
        assert not set(device_.docs()) & (SHARED | {DB_SHARING})
    time.sleep(2)  # a few passes of the followers
    assert live_ids(couch, dbs["bob"], SHARED | {DB_SHARING}) == set()
    assert own_revisions(couch, dbs["bob"]) == bobs_own
    assert revisions(couch, dbs["alice"]) == alice_before  # but db_sharing


def test_an_end_without_purge_leaves_read_only_copies_and_takes_write_away(
    client, couch, dbs, device
):
    share = read_write_share(client, couch, dbs)
    phone = device("bob", "phone")
    assert clean(phone.sync())
    assert client.delete(f"/v1/shares/{share['id']}").status_code == 200
    assert clean(phone.sync())
    docs = phone.docs()
    assert set(docs) >= SHARED  # Bob keeps his copies
    assert DB_SHARING not in docs  # but the app locks editing them


def test_a_downgrade_takes_write_away_and_read_only_holds(client, couch, dbs, device):
    share = read_write_share(client, couch, dbs)
    phone = device("bob", "phone")
    assert clean(phone.sync())
    assert DB_SHARING in phone.docs()
    assert patch(client, share["id"], {"access": "read"}).status_code == 200
    assert clean(phone.sync())
    assert DB_SHARING not in phone.docs()
    phone.edit(ITEM, name="Bob's blender")
    assert clean(phone.sync())
    undone = phone.live({"id": ITEM, "path": "data.name", "equals": "Blender"})
    assert undone["met"], undone
    assert couch.get(f"{dbs['alice']}/{ITEM}")["data"]["name"] == "Blender"


def test_a_later_share_never_carries_the_recipients_leftovers_back(
    client, couch, dbs, people, device
):
    share = read_write_share(client, couch, dbs)
    alice_phone = device("alice", "phone")
    phone, tablet = device("bob", "phone"), device("bob", "tablet")
    assert clean(alice_phone.sync()) and clean(phone.sync())
    tablet.pull()
    phone.edit(ITEM, name="Bob's blender")  # read-write: this edit is Alice's too
    assert clean(phone.sync())
    wait_for(
        lambda: couch.get(f"{dbs['alice']}/{ITEM}")["data"]["name"] == "Bob's blender",
        "Bob's edit at Alice's",
    )
    assert client.delete(f"/v1/shares/{share['id']}?purge=true").status_code == 200
    for device_ in (phone, tablet):
        assert clean(device_.sync())
        assert not set(device_.docs()) & SHARED
    alice_before = {i: d for i, d in couch.all_docs(dbs["alice"]).items() if i != DB_SHARING}

    read_write_share(client, couch, dbs)  # the same two databases share again
    for device_ in (phone, tablet, alice_phone, phone, tablet):
        assert clean(device_.sync())
    wait_for(lambda: live_ids(couch, dbs["bob"], SHARED) == SHARED, "the shared docs back at Bob's")
    assert clean(phone.sync())
    assert phone.docs()[ITEM]["data"]["name"] == "Bob's blender"
    alice_after = couch.all_docs(dbs["alice"])
    for doc_id, doc in alice_before.items():  # intact and current, whatever the revision
        assert content(alice_after[doc_id]) == content(doc), doc_id
    on_alices_phone = alice_phone.docs()
    for doc_id in SHARED:
        assert on_alices_phone[doc_id]["data"] == alice_before[doc_id]["data"]
