"""Revoking: stop the way back, withdraw db_sharing, stop the way out, purge if asked."""

import json

import responses

from service.sharing.model import Access, Direction
from service.sharing.selectors import Scope, share_selector
from tests.helpers import create_share, replicate, replicator_docs, revisions
from tests.pouchdb.demo import ALICE, BOB
from tests.test_selectors import COLLECTION_1

DB_SHARING = f"db_sharing-{ALICE}--{BOB}"
O2R = Direction.OWNER_TO_RECIPIENT


def purge_recorder(couch3, couch, db: str) -> list[dict]:
    """Answer `_purge` on `db` as CouchDB 3 does, and record what was asked."""
    bodies: list[dict] = []

    def purge(request):
        body = json.loads(request.body)
        bodies.append(body)
        return 201, {}, json.dumps({"purge_seq": None, "purged": body})

    couch3.add_callback(responses.POST, f"{couch.url}/{db}/_purge", callback=purge)
    return bodies


def test_revoke_read_share_stops_replication_and_keeps_the_data(client, couch, registered, dbs):
    share = create_share(client)
    replicate(
        couch,
        dbs["alice"],
        dbs["bob"],
        share_selector(ALICE, BOB, Access.READ, Scope(["c0ll-uuid-1"]), O2R),
    )
    bob_before = revisions(couch, dbs["bob"])
    response = client.delete(f"/v1/shares/{share['id']}")
    assert response.status_code == 200
    assert response.get_json()["status"] == "revoked"
    assert response.get_json()["replications"] == []
    assert replicator_docs(couch, share["id"]) == {}
    assert revisions(couch, dbs["bob"]) == bob_before
    assert client.delete(f"/v1/shares/{share['id']}").get_json()["status"] == "revoked"
    create_share(client)  # the pair is free again


def test_revoke_read_write_goes_in_order(client, couch3, couch, registered, dbs, calls):
    share = create_share(client, access="read-write")
    selector = share_selector(ALICE, BOB, Access.READ_WRITE, Scope(["c0ll-uuid-1"]), O2R)
    replicate(couch, dbs["alice"], dbs["bob"], selector)
    purged = purge_recorder(couch3, couch, dbs["bob"])
    calls.calls.clear()
    assert client.delete(f"/v1/shares/{share['id']}").status_code == 200
    writes = [(m, p) for m, p in calls.writes() if not p.startswith("broker_state")]
    assert writes == [
        ("DELETE", f"_replicator/sharing-broker-{share['id']}-recipient-to-owner"),
        ("DELETE", f"{dbs['alice']}/{DB_SHARING}"),
        ("DELETE", f"_replicator/sharing-broker-{share['id']}-owner-to-recipient"),
        ("DELETE", f"{dbs['bob']}/_design/sharing-broker-guard"),
        ("DELETE", f"{dbs['alice']}/_design/sharing-broker-guard"),
        ("PUT", f"{dbs['bob']}/_security"),
        ("PUT", f"{dbs['alice']}/_security"),
        ("DELETE", f"_users/org.couchdb.user:sharing-broker-{share['id']}"),
        ("POST", f"{dbs['bob']}/_purge"),
    ]
    bob_docs = couch.all_docs(dbs["bob"])
    assert purged == [{DB_SHARING: [bob_docs[DB_SHARING]["_rev"]]}]
    assert DB_SHARING not in couch.all_docs(dbs["alice"])


def test_purge_takes_only_the_owners_shared_docs(client, couch3, couch, registered, dbs):
    share = create_share(client, access="read-write")
    selector = share_selector(ALICE, BOB, Access.READ_WRITE, Scope(["c0ll-uuid-1"]), O2R)
    replicate(couch, dbs["alice"], dbs["bob"], selector)
    # Bob adds an item of his own to Alice's shared collection: it stays his.
    bobs_item = {
        "_id": "item-b0b-item-1",
        "type": "item",
        "data": {"name": "Bob's mug", "collection_id": "c0ll-uuid-1", "config_uuid": BOB},
    }
    couch.put(f"{dbs['bob']}/item-b0b-item-1", bobs_item)
    bob_docs = couch.all_docs(dbs["bob"])
    purged = purge_recorder(couch3, couch, dbs["bob"])
    response = client.delete(f"/v1/shares/{share['id']}?purge=true")
    assert response.status_code == 200
    asked = {doc_id: revs for body in purged for doc_id, revs in body.items()}
    assert set(asked) == COLLECTION_1 | {DB_SHARING}
    assert all(asked[doc_id] == [bob_docs[doc_id]["_rev"]] for doc_id in asked)
    assert "item-b0b-item-1" not in asked and "collection-b0b-coll-1" not in asked


def test_purge_never_touches_the_owners_database(client, couch3, couch, registered, dbs):
    share = create_share(client)
    purged_alice = purge_recorder(couch3, couch, dbs["alice"])
    purge_recorder(couch3, couch, dbs["bob"])
    assert client.delete(f"/v1/shares/{share['id']}?purge=true").status_code == 200
    assert purged_alice == []


def test_revoke_of_unknown_share_is_404(client, registered):
    response = client.delete("/v1/shares/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404


def test_revoke_rejects_a_bad_purge_flag(client, registered):
    share = create_share(client)
    response = client.delete(f"/v1/shares/{share['id']}?purge=maybe")
    assert response.status_code == 422
    assert "purge" in response.get_json()["errors"]
