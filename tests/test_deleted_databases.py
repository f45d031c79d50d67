"""A database deleted behind the broker's back: its shares still revoke, wholly.

A revoke treats a missing database, doc, user or replicator doc as a part already gone,
so the credential and the other database's entries go too. Reconcile revokes an active
share whose database is gone, and reports it.
"""

import pytest

from tests.consistency import members, scopes
from tests.helpers import create_share, replicator_docs
from tests.servers.demo import ALICE, BOB

RW = {"access": "read-write", "collections": ["c0ll-uuid-1"]}


def share_user(share: dict) -> str:
    return f"sharing-broker-{share['id']}"


def assert_nothing_left(couch, share: dict, db: str) -> None:
    """No replicator doc, no share user, and in `db` no member and no scope of the share."""
    assert replicator_docs(couch, share["id"]) == {}
    assert couch.request("GET", f"_users/org.couchdb.user:{share_user(share)}").status_code == 404
    assert share_user(share) not in members(couch, db)
    assert share_user(share) not in scopes(couch, db)


@pytest.mark.parametrize("gone", ["alice", "bob"])
@pytest.mark.parametrize("purge", ["false", "true"])
def test_a_share_whose_database_was_deleted_still_revokes(
    client, couch, registered, dbs, gone, purge
):
    share = create_share(client, **RW)
    couch.delete(dbs[gone])

    response = client.delete(f"/v1/shares/{share['id']}?purge={purge}")

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "revoked"
    kept = dbs["bob" if gone == "alice" else "alice"]
    assert_nothing_left(couch, share, kept)


def test_reconcile_revokes_a_share_whose_database_is_gone(client, couch, registered, dbs):
    share = create_share(client, **RW)
    couch.delete(dbs["bob"])

    report = client.post("/v1/reconcile").get_json()

    assert report["errors"] == []
    gone = [r for r in report["repaired"] if r["kind"] == "database gone" and "share_id" in r]
    assert gone == [
        {
            "kind": "database gone",
            "share_id": share["id"],
            "databases": [dbs["bob"]],
            "action": "revoked the share",
        }
    ]
    assert client.get(f"/v1/shares/{share['id']}").get_json()["status"] == "revoked"
    assert_nothing_left(couch, share, dbs["alice"])
    again = client.post("/v1/reconcile").get_json()
    assert again["errors"] == [] and again["repaired"] == []
    assert {"kind": "database gone", "database": dbs["bob"]} in again["found"]


def test_a_registration_of_a_deleted_database_can_be_forgotten(client, couch, registered, dbs):
    share = create_share(client, **RW)
    couch.delete(dbs["bob"])
    assert client.delete(f"/v1/shares/{share['id']}").status_code == 200

    assert client.delete(f"/v1/databases/{BOB}").status_code == 204
    assert client.get(f"/v1/databases/{BOB}").status_code == 404


def test_a_new_share_to_a_deleted_database_is_refused_and_leaves_nothing(
    client, couch, registered, dbs
):
    couch.delete(dbs["bob"])

    response = client.post(
        "/v1/shares", json={"owner": registered["alice"], "recipient": BOB, **RW}
    )

    assert response.status_code == 409, response.get_json()
    assert "no longer exists" in response.get_json()["detail"]
    assert client.get("/v1/shares").get_json()["items"] == []
    assert members(couch, dbs["alice"]) == set()


def test_a_preview_of_a_share_whose_owner_database_is_gone_is_409(client, couch, registered, dbs):
    share = create_share(client, **RW)
    couch.delete(dbs["alice"])

    response = client.get(f"/v1/shares/{share['id']}/preview")

    assert response.status_code == 409, response.get_json()
    assert response.get_json()["detail"] == f"the database of {ALICE} no longer exists"
    assert dbs["alice"] not in response.get_data(as_text=True)
