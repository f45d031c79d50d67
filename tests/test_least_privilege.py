"""Least privilege: a CouchDB user per share, in exactly its two databases, and nothing more."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from service.sharing.placing.credentials import SHARE_USER_ITERATIONS
from service.sharing.placing.guard import member_role
from tests.conftest import ADMIN_TOKEN
from tests.consistency import assert_consistent, members
from tests.helpers import create_share, replicator_docs, wait_for, wait_for_docs
from tests.servers.demo import ALICE

RW = {"access": "read-write", "collections": ["c0ll-uuid-1"]}


def share_login(couch, share_id: str) -> tuple[str, str]:
    doc = replicator_docs(couch, share_id)[f"sharing-broker-{share_id}-owner-to-recipient"]
    basic = doc["source"]["auth"]["basic"]
    return basic["username"], basic["password"]


def as_user(couch, auth, method: str, path: str, **kwargs) -> int:
    return requests.request(
        method, f"{couch.url}/{path}", auth=auth, timeout=10, **kwargs
    ).status_code


def test_the_share_user_reaches_its_two_databases_and_nothing_else(
    couch, client, registered, dbs, people
):
    share = create_share(client, **RW)
    login = share_login(couch, share["id"])
    assert as_user(couch, login, "GET", f"{dbs['alice']}/item-it3m-uuid-1") == 200
    assert as_user(couch, login, "GET", f"{dbs['bob']}/0000-config") == 200
    item = {"type": "item", "data": {"collection_id": "c0ll-uuid-1"}}
    assert as_user(couch, login, "PUT", f"{dbs['bob']}/item-from-replication", json=item) == 201
    assert as_user(couch, login, "GET", f"{people['carol_db']}/0000-config") in (401, 403)
    assert as_user(couch, login, "GET", "_users/_all_docs") >= 400  # pouchdb-server says 400


@pytest.mark.couchdb  # CouchDB's own hashing, and the replicator's logins
def test_the_broker_hashes_the_share_password_and_couchdb_may_hash_it_again(
    couch, client, registered, dbs
):
    share = create_share(client, **RW)
    user_path = f"_users/org.couchdb.user:sharing-broker-{share['id']}"
    # Written with the broker's few rounds; the replicator's first login makes CouchDB
    # 3.4+ hash it again with its own settings (`upgrade_hash_on_auth`), keeping the salt.
    written = couch.get(user_path, revs="true")["_revisions"]["ids"][-1]
    first = couch.get(user_path, rev=f"1-{written}")
    assert (first["password_scheme"], first["iterations"]) == ("pbkdf2", SHARE_USER_ITERATIONS)
    assert "password" not in first and "pbkdf2_prf" not in first
    login = share_login(couch, share["id"])
    assert as_user(couch, login, "GET", f"{dbs['alice']}/0000-config") == 200

    upgraded = wait_for(
        lambda: (doc := couch.get(user_path)).get("pbkdf2_prf") and doc,
        "CouchDB hashing the share password again after the first login",
    )
    assert upgraded["salt"] == first["salt"]
    assert upgraded["iterations"] != SHARE_USER_ITERATIONS
    item = {"_id": "item-after-rehash", "type": "item", "data": {"collection_id": "c0ll-uuid-1"}}
    couch.put(f"{dbs['alice']}/item-after-rehash", item)
    wait_for_docs(couch, dbs["bob"], {"item-after-rehash"}, "an item after the re-hash")


def test_revoke_takes_the_credential_away(couch, client, registered, dbs):
    share = create_share(client, **RW)
    login = share_login(couch, share["id"])
    client.delete(f"/v1/shares/{share['id']}")
    for db in dbs.values():
        assert as_user(couch, login, "GET", f"{db}/0000-config") == 401
        assert login[0] not in members(couch, db)
    assert couch.request("GET", f"_users/org.couchdb.user:{login[0]}").status_code == 404


def test_rotation_retires_the_old_password(couch, client, registered, dbs):
    share = create_share(client, **RW)
    old = share_login(couch, share["id"])
    etag = client.get(f"/v1/shares/{share['id']}").headers["ETag"]
    response = client.post(f"/v1/shares/{share['id']}/rotate-credentials")
    assert response.status_code == 200
    assert response.headers["ETag"] != etag
    new = share_login(couch, share["id"])
    assert new[0] == old[0] and new[1] != old[1]
    r2o = replicator_docs(couch, share["id"])[f"sharing-broker-{share['id']}-recipient-to-owner"]
    assert r2o["source"]["auth"]["basic"]["password"] == new[1]
    assert as_user(couch, old, "GET", f"{dbs['alice']}/0000-config") == 401
    assert as_user(couch, new, "GET", f"{dbs['alice']}/0000-config") == 200
    events = client.get(f"/v1/shares/{share['id']}/events").get_json()["items"]
    assert events[-1]["action"] == "rotate credentials" and new[1] not in str(events)


def test_only_the_owner_and_admins_rotate(app, couch, registered, people):
    import base64

    admin = app.test_client()
    admin.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN_TOKEN}"
    share = create_share(admin, **RW)

    def rotate(person: str) -> int:
        token = base64.b64encode(":".join(people[person]).encode()).decode()
        headers = {"Authorization": f"Basic {token}"}
        return (
            app.test_client()
            .post(f"/v1/shares/{share['id']}/rotate-credentials", headers=headers)
            .status_code
        )

    assert [rotate(p) for p in ("alice", "bob", "carol")] == [200, 403, 404]


def test_security_entries_from_before_survive_concurrent_shares(
    couch, client, registered, dbs, settings
):
    role = member_role(dbs["alice"])
    before = {
        "admins": {"names": ["alice-admin"], "roles": ["family-admins"]},
        "members": {"names": [dbs["alice"], "grandma"], "roles": ["family"]},
        "custom": {"kept": True},
    }
    couch.put(f"{dbs['alice']}/_security", before)
    recipients = []
    for n in range(5):
        db, uid = f"{dbs['bob']}-r{n}", str(uuid.uuid4())
        couch.create_db(db, [{"_id": "0000-config", "uuid": uid}])
        couch.add_member(db, db)
        client.post("/v1/databases", json={"database": db})
        recipients.append(uid)

    def share_with(uid):
        return create_share(client, owner=ALICE, recipient=uid, **RW)["id"]

    with ThreadPoolExecutor(5) as pool:
        ids = list(pool.map(share_with, recipients))
    # One role for every share, added once: the five never edit `_security` themselves.
    with_role = {**before, "members": {**before["members"], "roles": ["family", role]}}
    during = couch.get(f"{dbs['alice']}/_security")
    assert {k: v for k, v in during.items() if not k.startswith("_")} == with_role
    assert members(couch, dbs["alice"]) == {f"sharing-broker-{i}" for i in ids}
    assert not [i for i in couch.all_docs(settings.state_db) if i.startswith("lock:")]
    with ThreadPoolExecutor(5) as pool:
        list(pool.map(lambda i: client.delete(f"/v1/shares/{i}"), ids))
    after = couch.get(f"{dbs['alice']}/_security")
    assert {k: v for k, v in after.items() if not k.startswith("_")} == with_role
    assert members(couch, dbs["alice"]) == set()  # the role stays, and gives nothing


def test_reconcile_restores_a_deleted_share_user_and_entry(
    couch, client, registered, dbs, settings
):
    share = create_share(client, **RW)
    name, _ = share_login(couch, share["id"])
    user = couch.get(f"_users/org.couchdb.user:{name}")
    couch.request("DELETE", f"_users/org.couchdb.user:{name}", params={"rev": user["_rev"]})
    security = couch.get(f"{dbs['bob']}/_security")
    security["members"]["roles"].remove(member_role(dbs["bob"]))
    couch.put(f"{dbs['bob']}/_security", security)
    report = client.post("/v1/reconcile").get_json()
    assert report["errors"] == []
    assert assert_consistent(couch, settings.state_db, dbs).id == share["id"]
    login = share_login(couch, share["id"])
    assert as_user(couch, login, "GET", f"{dbs['bob']}/0000-config") == 200


def test_reconcile_removes_stray_share_users_and_entries_only(
    couch, client, registered, dbs, settings
):
    stray = f"sharing-broker-{uuid.uuid4()}"
    couch.put(
        f"_users/org.couchdb.user:{stray}",
        {
            "name": stray,
            "type": "user",
            "roles": [],
            "password": "x" * 20,
            "sharing_broker": {
                "broker": settings.state_db,
                "share_id": stray.removeprefix("sharing-broker-"),
            },
        },
    )
    ghost = f"sharing-broker-{uuid.uuid4()}"  # an entry with no user behind it
    security = couch.get(f"{dbs['alice']}/_security")
    other = f"sharing-broker-but-not-a-uuid-user-{dbs['alice']}"  # another broker's, say
    security["members"]["names"] += [ghost, other]
    couch.put(f"{dbs['alice']}/_security", security)
    couch.put(
        f"_users/org.couchdb.user:{other}",
        {
            "name": other,
            "type": "user",
            "roles": [],
            "password": "y" * 20,
        },
    )
    report = client.post("/v1/reconcile").get_json()
    kinds = {(r["kind"], r.get("doc_id") or r.get("name")) for r in report["repaired"]}
    assert ("orphan share user", f"org.couchdb.user:{stray}") in kinds
    assert ("orphan _security entry", ghost) in kinds
    names = couch.get(f"{dbs['alice']}/_security")["members"]["names"]
    assert ghost not in names and other in names
    couch.delete_doc("_users", f"org.couchdb.user:{other}")
    assert couch.request("GET", f"_users/org.couchdb.user:{stray}").status_code == 404
