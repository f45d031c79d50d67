"""Shares across two real Apache CouchDB servers.

Alice's database is on the `default` server, Bob's on a second one the broker knows as
`home`. Both replications run on Alice's server: a push to Bob's, a pull from it. The share
user exists on both servers, each database has its own guard, and every operation, reconcile
and the followers work across them. A server taken away in the middle of an operation
leaves nothing half-done on the one that stayed up, and reconcile finishes the rest.
"""

import base64
import threading
from dataclasses import replace

import pytest
import requests

from service.app import create_app, ensure_state_db
from service.config import ServerSettings
from service.couch import CouchClient
from tests.consistency import members, scopes
from tests.helpers import (
    create_share,
    doc_state,
    remove_broker_footprint,
    revisions,
    wait_for,
    wait_for_docs,
    withdrawn_by,
)
from tests.servers.demo import ALICE, BOB, alice_docs, bob_docs
from tests.test_rules import CONTAINERS, item_with_picture
from tests.test_selectors import COLLECTION_1

pytestmark = pytest.mark.couchdb

HOME = "home"
RW = {"access": "read-write", "collections": ["c0ll-uuid-1"]}
DB_SHARING = f"db_sharing-{ALICE}--{BOB}"
ITEM, UNSHARED_ITEM = "item-it3m-uuid-1", "item-it3m-uuid-2"


class Outage:
    """Takes one server away from the broker: every request to it fails to connect, from
    the first request that `starts_at(method, url)` matches, until `end()`."""

    def __init__(self, monkeypatch, server: str, starts_at=lambda method, url: True):
        self.state = "coming"
        original = CouchClient._send

        def send(client, method, url, **kwargs):
            if client.server == server and self.state == "coming" and starts_at(method, url):
                self.state = "down"
            if client.server == server and self.state == "down":
                raise requests.ConnectionError("the test took this server away")
            return original(client, method, url, **kwargs)

        monkeypatch.setattr(CouchClient, "_send", send)

    def end(self) -> None:
        self.state = "over"


@pytest.fixture
def two(settings, second_couch):
    """Settings that name the second server `home`."""
    extra = ServerSettings(HOME, second_couch.url, *second_couch.admin)
    return replace(settings, other_servers=(extra,))


@pytest.fixture
def app(two):
    app = create_app(two)
    ensure_state_db(app)
    return app


@pytest.fixture
def split(couch, second_couch, names, two):
    """Alice's database on `default`, Bob's on `home`."""
    couch.create_db(names["alice"], alice_docs())
    second_couch.create_db(names["bob"], bob_docs())
    couch.add_member(names["alice"], names["alice"])
    second_couch.add_member(names["bob"], names["bob"])
    yield names
    remove_broker_footprint(two.state_db, couch, second_couch)
    couch.delete(names["alice"])
    second_couch.delete(names["bob"])


@pytest.fixture
def registered(client, split):
    alice = client.post("/v1/databases", json={"database": split["alice"]})
    bob = client.post("/v1/databases", json={"database": split["bob"], "server": HOME})
    assert (alice.status_code, bob.status_code) == (201, 201), (alice.json, bob.json)
    assert (alice.json["server"], bob.json["server"]) == ("default", HOME)
    return {"alice": ALICE, "bob": BOB}


def labelled(server, db: str, state_db: str) -> set[str]:
    """The ids of the docs in `db` that the broker with this state database labelled."""
    found = server.request(
        "POST", f"{db}/_find", json={"selector": {"sharing_broker.broker": state_db}}
    )
    return {doc["_id"] for doc in found.json()["docs"]}


def footprint(couch, second_couch, split, state_db: str) -> dict:
    """What the broker placed on each server: replicator docs, share users, and which of
    them are members of the database there, and carry a scope in it."""
    found = {}
    for name, server, db in (
        ("default", couch, split["alice"]),
        (HOME, second_couch, split["bob"]),
    ):
        found[name] = {
            "_replicator": labelled(server, "_replicator", state_db),
            "_users": labelled(server, "_users", state_db),
            "members": sorted(members(server, db)),
            "scopes": sorted(scopes(server, db)),
        }
    return found


NOTHING = {"_replicator": set(), "_users": set(), "members": [], "scopes": []}


def test_a_read_only_share_crosses_from_one_server_to_the_other(
    client, couch, second_couch, registered, split, two
):
    share = create_share(client)

    assert share["status"] == "active"
    [replication] = share["replications"]
    assert (replication["source_server"], replication["target_server"]) == ("default", HOME)
    user = f"sharing-broker-{share['id']}"
    placed = footprint(couch, second_couch, split, two.state_db)
    # Both replications on the owner's server; the share user and its access on each.
    assert placed["default"]["_replicator"] == {replication["id"]}
    assert placed[HOME]["_replicator"] == set()
    assert placed["default"]["_users"] == placed[HOME]["_users"] == {f"org.couchdb.user:{user}"}
    assert placed["default"]["members"] == placed[HOME]["members"] == [user]
    assert placed["default"]["scopes"] == placed[HOME]["scopes"] == [user]
    wait_for_docs(second_couch, split["bob"], COLLECTION_1, "collection 1 at Bob's, on home")
    assert doc_state(second_couch, split["bob"], UNSHARED_ITEM) == "missing"
    status = wait_for(
        lambda: (
            client.get(f"/v1/shares/{share['id']}").json["replications"][0]["replication_status"][
                "state"
            ]
            == "running"
        ),
        "the owner's server reports the replication running",
    )
    assert status


def test_a_read_write_share_brings_the_recipients_edit_back_across_servers(
    client, couch, second_couch, registered, split
):
    create_share(client, **RW)
    wait_for_docs(second_couch, split["bob"], COLLECTION_1 | {DB_SHARING}, "the share at Bob's")

    item = second_couch.get(f"{split['bob']}/{ITEM}")
    item["data"]["name"] = "renamed at Bob's"
    second_couch.put(f"{split['bob']}/{ITEM}", item)

    wait_for(
        lambda: couch.get(f"{split['alice']}/{ITEM}")["data"]["name"] == "renamed at Bob's",
        "Bob's edit at Alice's, on default",
        couch=couch,
    )


def test_revoke_with_purge_leaves_nothing_on_either_server(
    client, couch, second_couch, registered, split, two
):
    alice_before = revisions(couch, split["alice"])
    share = create_share(client, **RW)
    wait_for_docs(second_couch, split["bob"], COLLECTION_1 | {DB_SHARING}, "the share at Bob's")

    response = client.delete(f"/v1/shares/{share['id']}?purge=true")

    assert response.status_code == 200, response.json
    assert response.json["status"] == "revoked"
    placed = footprint(couch, second_couch, split, two.state_db)
    assert placed == {"default": NOTHING, HOME: NOTHING}
    for doc_id in COLLECTION_1:
        assert withdrawn_by(second_couch, split["bob"], doc_id) == share["id"], doc_id
    assert doc_state(second_couch, split["bob"], DB_SHARING) == "deleted"
    assert doc_state(second_couch, split["bob"], "collection-b0b-coll-1") == "live"
    assert revisions(couch, split["alice"]) == alice_before  # db_sharing came and went


def test_a_forged_branch_from_the_other_server_is_removed(
    app, client, couch, second_couch, registered, split
):
    create_share(client, **RW)
    wait_for_docs(second_couch, split["bob"], COLLECTION_1, "the share at Bob's")
    own = couch.get(f"{split['alice']}/{UNSHARED_ITEM}")
    # Bob writes under the id of Alice's unshared item, into the shared collection, with a
    # longer history; the pull from his server carries it to Alice's past her guard.
    forged = {"type": "item", "data": {"collection_id": "c0ll-uuid-1", "name": "mine now"}}
    rev = second_couch.put(f"{split['bob']}/{UNSHARED_ITEM}", forged)["rev"]
    for _ in range(3):
        doc = second_couch.get(f"{split['bob']}/{UNSHARED_ITEM}")
        rev = second_couch.put(f"{split['bob']}/{UNSHARED_ITEM}", doc)["rev"]
    wait_for(
        lambda: couch.get(f"{split['alice']}/{UNSHARED_ITEM}")["_rev"] == rev,
        "the forgery winning at Alice's",
        couch=couch,
    )

    removed = app.extensions["sharing_broker"].branch_watch().run()

    assert [(r.database, r.doc_id, r.rev) for r in removed] == [
        (split["alice"], UNSHARED_ITEM, rev)
    ]
    assert couch.get(f"{split['alice']}/{UNSHARED_ITEM}", conflicts="true") == own
    wait_for(
        lambda: doc_state(second_couch, split["bob"], UNSHARED_ITEM) == "deleted",
        "the tombstone back at Bob's, on home",
        couch=couch,
    )


def test_the_followers_see_databases_move_on_every_server(app, registered, split, second_couch):
    updates = app.extensions["sharing_broker"].database_updates()
    assert updates.changed() is None  # the first look only finds where each feed is
    seen = set()

    second_couch.put(f"{split['bob']}/item-new", {"type": "item", "data": {}})

    def moved() -> bool:
        seen.update(updates.changed() or ())
        return f"{HOME}:{split['bob']}" in seen

    wait_for(moved, "Bob's database moving in home's _db_updates")
    assert split["bob"] not in seen  # the same name on default did not move


def test_the_same_database_name_on_two_servers_is_two_databases(
    client, couch, second_couch, names, two
):
    name = names["alice"]
    couch.create_db(name, alice_docs())
    second_couch.create_db(name, bob_docs())
    try:
        here = client.post("/v1/databases", json={"database": name})
        there = client.post("/v1/databases", json={"database": name, "server": HOME})
        assert (here.status_code, there.status_code) == (201, 201)
        assert {(here.json["config_uuid"], here.json["server"])} | {
            (there.json["config_uuid"], there.json["server"])
        } == {(ALICE, "default"), (BOB, HOME)}
    finally:
        couch.delete(name)
        second_couch.delete(name)


def test_an_unknown_server_is_a_problem_naming_the_field(client, split):
    response = client.post("/v1/databases", json={"database": split["alice"], "server": "mars"})

    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert "server" in response.json["errors"]


def basic(name: str, password: str) -> dict:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def dana(couch, second_couch, split):
    """Two people called dana: one on each server, each the member of her own database."""
    name = f"dana-{split['alice'].rsplit('-', 1)[1]}"
    passwords = {"default": "canary-dana-default", HOME: "canary-dana-home"}
    couch.add_member(split["alice"], name, passwords["default"])
    second_couch.add_member(split["bob"], name, passwords[HOME])
    yield name, passwords
    couch.delete_doc("_users", f"org.couchdb.user:{name}")
    second_couch.delete_doc("_users", f"org.couchdb.user:{name}")


def test_one_user_name_on_two_servers_is_two_people(app, split, dana):
    name, passwords = dana
    users = app.test_client()
    on_default, on_home = basic(name, passwords["default"]), basic(name, passwords[HOME])
    home = {"CouchDB-Server": HOME}
    bob = {"database": split["bob"], "server": HOME}

    # dana of default cannot act for home's databases, even with the same name.
    refused = users.post("/v1/databases", json=bob, headers=on_default)
    assert refused.status_code == 403, refused.json
    # Her home password means nothing to default, and the reverse.
    assert users.post("/v1/databases", json=bob, headers=on_home).status_code == 401
    assert users.post("/v1/databases", json=bob, headers={**on_default, **home}).status_code == 401
    # dana of home registers her own database; dana of default cannot see it.
    registered = users.post("/v1/databases", json=bob, headers={**on_home, **home})
    assert registered.status_code == 201, registered.json
    assert users.get(f"/v1/databases/{BOB}", headers={**on_home, **home}).status_code == 200
    assert users.get(f"/v1/databases/{BOB}", headers=on_default).status_code == 404
    # Her own server is the default for a registration.
    mine = users.post("/v1/databases", json={"database": split["alice"]}, headers=on_default)
    assert (mine.status_code, mine.json["server"]) == (201, "default")


def test_a_session_cookie_counts_only_on_the_server_that_issued_it(
    app, couch, registered, split, dana
):
    name, passwords = dana
    login = requests.post(
        f"{couch.url}/_session", json={"name": name, "password": passwords["default"]}, timeout=10
    )
    cookie = login.cookies["AuthSession"]
    users = app.test_client()
    users.set_cookie("AuthSession", cookie)

    assert users.get(f"/v1/shares?database={ALICE}").status_code == 200
    refused = users.get(f"/v1/shares?database={BOB}", headers={"CouchDB-Server": HOME})
    assert refused.status_code == 401


def test_an_unknown_server_header_is_a_problem_naming_it(app, split, dana):
    name, passwords = dana
    response = app.test_client().get(
        f"/v1/shares?database={ALICE}",
        headers={**basic(name, passwords["default"]), "CouchDB-Server": "mars"},
    )

    assert response.status_code == 422
    assert "CouchDB-Server" in response.json["errors"]


def test_a_server_lost_in_the_middle_of_a_create_is_rolled_back_by_reconcile(
    client, couch, second_couch, registered, split, two, monkeypatch
):
    # home answers the reads, then goes away at the first write of the share user there.
    outage = Outage(monkeypatch, HOME, lambda method, url: method == "PUT" and "_users" in url)

    response = client.post(
        "/v1/shares", json={"owner": ALICE, "recipient": BOB, "access": "read-write"}
    )

    assert response.status_code == 503
    assert "'home'" in response.json["detail"]
    # Nothing of the share is left on the server that stayed up.
    assert footprint(couch, second_couch, split, two.state_db)["default"] == NOTHING
    assert doc_state(couch, split["alice"], DB_SHARING) in ("missing", "deleted")

    outage.end()
    report = client.post("/v1/reconcile").json

    assert not report["errors"], report["errors"]
    assert footprint(couch, second_couch, split, two.state_db) == {
        "default": NOTHING,
        HOME: NOTHING,
    }
    again = create_share(client, **RW)  # the pair is free again
    assert again["status"] == "active"


def test_a_server_lost_in_the_middle_of_a_revoke_is_finished_by_reconcile(
    client, couch, second_couch, registered, split, two, monkeypatch
):
    share = create_share(client, **RW)
    wait_for_docs(second_couch, split["bob"], COLLECTION_1 | {DB_SHARING}, "the share at Bob's")
    outage = Outage(monkeypatch, HOME)

    response = client.delete(f"/v1/shares/{share['id']}?purge=true")

    assert response.status_code == 503
    # The replications are stopped, and the owner's server holds nothing of the share.
    assert footprint(couch, second_couch, split, two.state_db)["default"] == NOTHING
    assert client.get(f"/v1/shares/{share['id']}").json["status"] == "revoking"

    outage.end()
    report = client.post("/v1/reconcile").json

    assert not report["errors"], report["errors"]
    assert client.get(f"/v1/shares/{share['id']}").json["status"] == "revoked"
    assert footprint(couch, second_couch, split, two.state_db) == {
        "default": NOTHING,
        HOME: NOTHING,
    }
    for doc_id in COLLECTION_1:
        assert withdrawn_by(second_couch, split["bob"], doc_id) == share["id"], doc_id
    assert doc_state(second_couch, split["bob"], DB_SHARING) == "deleted"


def test_readiness_reports_each_server_and_a_lost_one_degrades_it(client, split, monkeypatch):
    assert client.get("/readyz").json == {
        "status": "ok",
        "followers": "ok",
        "servers": {"default": "ok", HOME: "ok"},
    }

    Outage(monkeypatch, HOME)
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json["status"] == "degraded"
    assert response.json["servers"]["default"] == "ok"
    assert "unavailable" in response.json["servers"][HOME]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'server="home"' in metrics


def test_requests_for_the_lost_server_get_503_and_the_others_go_on(
    client, couch, registered, split, monkeypatch
):
    Outage(monkeypatch, HOME)

    assert client.get(f"/v1/databases/{ALICE}").status_code == 200
    response = client.post("/v1/shares", json={"owner": ALICE, "recipient": BOB, "access": "read"})
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert client.get("/v1/shares").json["items"] == []  # nothing was written


def test_a_share_owned_on_the_second_server_runs_and_reports_there(
    app, client, couch, second_couch, registered, split, two
):
    share = create_share(client, owner=BOB, recipient=ALICE, collections=["b0b-coll-1"])

    [replication] = share["replications"]
    assert (replication["source_server"], replication["target_server"]) == (HOME, "default")
    placed = footprint(couch, second_couch, split, two.state_db)
    assert placed[HOME]["_replicator"] == {replication["id"]}
    assert placed["default"]["_replicator"] == set()
    wait_for_docs(couch, split["alice"], {"collection-b0b-coll-1"}, "Bob's Books at Alice's")

    def running() -> bool:
        found = client.get(f"/v1/shares/{share['id']}").json["replications"][0]
        return found["replication_status"]["state"] == "running"

    wait_for(running, "home's scheduler reports the replication running")
    app.extensions["sharing_broker"].state_recorder().run()
    listed = client.get(f"/v1/shares?with_status=true&database={BOB}").json["items"]
    assert [r["replication_status"]["state"] for r in listed[0]["replications"]] == ["running"]


def test_a_new_password_reaches_the_share_user_on_both_servers(
    client, couch, second_couch, registered, split
):
    share = create_share(client)
    wait_for_docs(second_couch, split["bob"], COLLECTION_1, "the share at Bob's")

    rotated = client.post(f"/v1/shares/{share['id']}/rotate-credentials")

    assert rotated.status_code == 200, rotated.json
    late = {"type": "item", "data": {"collection_id": "c0ll-uuid-1", "name": "after rotation"}}
    couch.put(f"{split['alice']}/item-late", late)
    wait_for_docs(second_couch, split["bob"], {"item-late"}, "a new item crossing after rotation")


def test_from_read_write_to_read_only_across_servers(
    client, couch, second_couch, registered, split, two
):
    share = create_share(client, **RW)
    wait_for_docs(second_couch, split["bob"], COLLECTION_1 | {DB_SHARING}, "the share at Bob's")
    etag = client.get(f"/v1/shares/{share['id']}").headers["ETag"]

    changed = client.patch(
        f"/v1/shares/{share['id']}", json={"access": "read"}, headers={"If-Match": etag}
    )

    assert changed.status_code == 200, changed.json
    assert len(changed.json["replications"]) == 1
    assert labelled(couch, "_replicator", two.state_db) == {changed.json["replications"][0]["id"]}
    # Bob's copy of db_sharing is deleted on his server: his app stops offering edits. The
    # tombstone is the broker's, or Alice's own if the replication still carried it.
    assert doc_state(second_couch, split["bob"], DB_SHARING) == "deleted"
    assert doc_state(couch, split["alice"], DB_SHARING) == "deleted"


def test_the_rule_follower_reads_the_owners_server_and_moves_the_recipients_scope(
    app, client, couch, second_couch, registered, split
):
    books = "b0b-coll-1"
    first = item_with_picture(1, "container", books) + item_with_picture(2, "item", books)
    second_couch.request("POST", f"{split['bob']}/_bulk_docs", json={"docs": first})
    share = create_share(client, owner=BOB, recipient=ALICE, collections=[books], rules=CONTAINERS)
    follow = app.extensions["sharing_broker"].rule_follow()
    follow.run()  # first look: followed from here on
    later = item_with_picture(3, "container", books)
    second_couch.request("POST", f"{split['bob']}/_bulk_docs", json={"docs": later})

    rewritten = follow.run()

    assert rewritten == {share["id"]: ["share_user:recipient", "replication:owner-to-recipient"]}
    wait_for_docs(couch, split["alice"], {doc["_id"] for doc in later}, "the new container")
    assert doc_state(couch, split["alice"], "item-rule-item-2") == "missing"  # not a container


def test_readiness_does_not_wait_for_a_server_that_hangs(client, split, monkeypatch):
    original = CouchClient._send
    released = threading.Event()

    def send(couch, method, url, **kwargs):
        if couch.server == HOME:
            released.wait(10)  # a server that takes the connection and never answers
        return original(couch, method, url, **kwargs)

    monkeypatch.setattr(CouchClient, "_send", send)
    try:
        response = client.get("/readyz")
    finally:
        released.set()

    assert response.status_code == 200
    assert response.json["status"] == "degraded"
    assert response.json["servers"] == {"default": "ok", HOME: "no answer within 2 s"}
