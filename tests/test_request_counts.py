"""CouchDB round trips per operation: counted, not timed, so a regression fails CI.

bench/ reports the same counts beside its timings; update both when an operation's design
changes.
"""

import pytest

from service.app import create_app
from tests.conftest import ADMIN_TOKEN
from tests.helpers import create_share, wait_for_docs
from tests.servers.demo import ALICE, BOB

RW = {"access": "read-write", "collections": ["c0ll-uuid-1"]}


def counted(calls, action) -> int:
    calls.calls.clear()
    response = action()
    assert response.status_code < 300, response.get_json()
    return len(calls.calls)


def test_create_read_write(client, registered, calls):
    body = {"owner": ALICE, "recipient": BOB, **RW}
    # Registrations with disputes; each database with its config and guard (2); the pair
    # claim with the record; the user, with its roles; db_sharing; per database, the first
    # time a share touches it, a `_security` read, the guard and the member role written
    # (6); both replicator docs; the record with its event and the admin's accept's, in one
    # request. No lock. The ceiling is 16.
    assert counted(calls, lambda: client.post("/v1/shares", json=body)) == 14


def test_create_on_databases_made_ready_before(client, registered, calls):
    body = {"owner": ALICE, "recipient": BOB, **RW}
    share = create_share(client, **RW)
    assert client.delete(f"/v1/shares/{share['id']}").status_code == 200
    # As above, but each database only has its `_security` read: the role is there.
    assert counted(calls, lambda: client.post("/v1/shares", json=body)) == 10


def test_invite_then_accept(client, registered, calls):
    body = {"owner": ALICE, "recipient": BOB, "auto_accept": False, **RW}
    # Registrations, both databases, the pair claim with the record, the event.
    assert counted(calls, lambda: client.post("/v1/shares", json=body)) == 5
    share_id = client.get("/v1/shares").get_json()["items"][0]["id"]
    assert counted(calls, lambda: client.post(f"/v1/shares/{share_id}/accept")) == 15


@pytest.mark.couchdb
@pytest.mark.parametrize("replica", ["same", "another"])
def test_revoke_read_write(client, couch, settings, registered, dbs, calls, replica):
    share = create_share(client, **RW)
    db_sharing = f"db_sharing-{ALICE}--{BOB}"
    wait_for_docs(couch, dbs["bob"], {db_sharing}, "db_sharing at Bob's")
    if replica == "another":  # one that has seen nothing of these databases: all the same
        client = create_app(settings).test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN_TOKEN}"
    # The share, the transition, registrations, both replicator docs found and deleted,
    # db_sharing found and deleted, the user found and deleted (its membership and scopes
    # go with it: neither database is written), Bob's db_sharing copy found and withdrawn,
    # the record with its event, and the pair claim found and released. The ceiling is 32.
    assert counted(calls, lambda: client.delete(f"/v1/shares/{share['id']}")) == 14


def test_get_with_status(client, registered, calls):
    share = create_share(client, **RW)
    assert counted(calls, lambda: client.get(f"/v1/shares/{share['id']}")) == 4


@pytest.mark.parametrize("extra_shares", [0, 3])
def test_list_with_status_is_three_requests_whatever_the_size(
    client, registered, calls, extra_shares, couch, names
):
    create_share(client, **RW)
    for n in range(extra_shares):
        db = names[f"extra-{n}"] = f"{names['alice']}-extra-{n}"  # dropped with the others
        couch.create_db(
            db, [{"_id": "0000-config", "uuid": f"00000000-0000-4000-8000-00000000000{n}"}]
        )
        couch.add_member(db, db)
        client.post("/v1/databases", json={"database": db})
        create_share(client, owner=f"00000000-0000-4000-8000-00000000000{n}", collections=None)
    page = lambda: client.get("/v1/shares?with_status=true&limit=50")  # noqa: E731
    # The page, the registrations with the recorded states, and the replicator docs.
    assert counted(calls, page) == 3
    states = [
        r["replication_status"]["state"]
        for s in page().get_json()["items"]
        for r in s["replications"]
    ]
    assert states and set(states) == {"unknown"}
