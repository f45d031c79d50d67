"""Changing a share: the replicator docs and `db_sharing` follow, guarded by If-Match."""

import pytest

from tests.helpers import (
    create_share,
    doc_state,
    find_ids,
    replicator_docs,
    wait_for_docs,
)
from tests.servers.demo import ALICE, BOB
from tests.test_selectors import COLLECTION_1, COLLECTION_2

DB_SHARING = f"db_sharing-{ALICE}--{BOB}"


def patch(client, share_id: str, body: dict, etag: str | None = None):
    if etag is None:
        etag = client.get(f"/v1/shares/{share_id}").headers["ETag"]
    return client.patch(f"/v1/shares/{share_id}", json=body, headers={"If-Match": etag})


def test_patch_needs_if_match(client, registered):
    share = create_share(client)
    response = client.patch(f"/v1/shares/{share['id']}", json={"access": "read-write"})
    assert response.status_code == 428
    assert response.mimetype == "application/problem+json"


def test_patch_with_a_stale_etag_is_412_and_changes_nothing(client, couch, registered):
    share = create_share(client)
    stale = client.get(f"/v1/shares/{share['id']}").headers["ETag"]
    assert patch(client, share["id"], {"collections": ["c0ll-uuid-2"]}, stale).status_code == 200
    response = patch(client, share["id"], {"access": "read-write"}, stale)
    assert response.status_code == 412
    assert client.get(f"/v1/shares/{share['id']}").get_json()["access"] == "read"
    assert len(replicator_docs(couch, share["id"])) == 1


def test_widening_collections_moves_the_selector(client, couch, registered, dbs):
    share = create_share(client)
    response = patch(client, share["id"], {"collections": ["c0ll-uuid-1", "c0ll-uuid-2"]})
    assert response.status_code == 200
    assert response.get_json()["collections"] == ["c0ll-uuid-1", "c0ll-uuid-2"]
    (doc,) = replicator_docs(couch, share["id"]).values()
    assert find_ids(couch, dbs["alice"], doc["selector"]) == COLLECTION_1 | COLLECTION_2


def test_read_to_read_write_adds_db_sharing_and_the_way_back(client, couch, registered, dbs):
    share = create_share(client)
    response = patch(client, share["id"], {"access": "read-write"})
    assert response.status_code == 200
    assert response.get_json()["db_sharing_doc_id"] == DB_SHARING
    assert couch.all_docs(dbs["alice"])[DB_SHARING]["data"]["permissions"] == ["read", "write"]
    docs = replicator_docs(couch, share["id"])
    assert set(docs) == {
        f"sharing-broker-{share['id']}-owner-to-recipient",
        f"sharing-broker-{share['id']}-recipient-to-owner",
    }
    o2r = docs[f"sharing-broker-{share['id']}-owner-to-recipient"]
    assert DB_SHARING in find_ids(couch, dbs["alice"], o2r["selector"])


def test_read_write_to_read_removes_them_in_a_safe_order(client, couch, registered, dbs, calls):
    share = create_share(client, access="read-write")
    calls.calls.clear()
    response = patch(client, share["id"], {"access": "read"})
    assert response.status_code == 200
    assert response.get_json()["db_sharing_doc_id"] is None
    assert DB_SHARING not in couch.all_docs(dbs["alice"])
    (o2r,) = replicator_docs(couch, share["id"]).values()
    assert find_ids(couch, dbs["alice"], o2r["selector"]) == COLLECTION_1
    deletes = [
        path
        for method, path in calls.writes()
        if method == "DELETE" and not path.startswith("broker_state")
    ]
    assert deletes == [
        f"_replicator/sharing-broker-{share['id']}-recipient-to-owner",
        f"{dbs['alice']}/{DB_SHARING}",
    ]


def test_patch_refuses_bad_changes(client, registered):
    share = create_share(client)
    for body, field in [
        ({}, "access"),
        ({"access": "admin"}, "access"),
        ({"collections": ["no-such-collection"]}, "collections"),
        ({"collections": []}, "collections"),
    ]:
        response = patch(client, share["id"], body)
        assert response.status_code == 422, body
        assert field in response.get_json()["errors"], body


def test_a_revoked_share_cannot_change(client, registered):
    share = create_share(client)
    client.delete(f"/v1/shares/{share['id']}")
    assert patch(client, share["id"], {"access": "read-write"}).status_code == 409


@pytest.mark.couchdb
def test_read_write_to_read_deletes_the_recipients_db_sharing(client, couch, registered, dbs):
    """The owner's deletion of db_sharing may never arrive: the recipient's guard refuses
    db_sharing from the moment the share is read-only. So the broker deletes the copy, with
    a tombstone that reaches the recipient's devices (`tests/test_devices.py`)."""
    share = create_share(client, access="read-write")
    wait_for_docs(couch, dbs["bob"], {DB_SHARING}, "db_sharing at Bob's")

    assert patch(client, share["id"], {"access": "read"}).status_code == 200

    # A tombstone, which reaches Bob's devices: the broker's, or the owner's deletion if
    # the replication, still running, carried it first.
    assert doc_state(couch, dbs["bob"], DB_SHARING) == "deleted"


def test_if_match_star_matches_the_share_as_it_is(client, registered):
    share = create_share(client)
    response = patch(client, share["id"], {"access": "read-write"}, etag="*")
    assert response.status_code == 200
    assert response.get_json()["access"] == "read-write"
    stale = '"not-the-etag"'
    current = client.get(f"/v1/shares/{share['id']}").headers["ETag"]
    assert patch(client, share["id"], {"access": "read"}, etag=stale).status_code == 412
    assert (
        patch(client, share["id"], {"access": "read"}, etag=f"{stale}, {current}").status_code
        == 200
    )
