"""Creating, reading and listing shares, against the test server over HTTP."""

import pytest

from service.sharing.core.model import Access, Direction
from service.sharing.crossing.selectors import Scope, share_selector
from service.sharing.placing.guard import MEMBER_ROLE, member_role, scopes_in_roles
from tests.helpers import create_share, find_ids, replicator_docs, revisions, wait_for
from tests.servers.demo import ALICE, BOB
from tests.test_selectors import COLLECTION_1, COLLECTION_2

pytestmark = pytest.mark.fallback  # also run on pouchdb-server

O2R, R2O = Direction.OWNER_TO_RECIPIENT, Direction.RECIPIENT_TO_OWNER
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def share_password(couch, share_id: str) -> str:
    """The share user's password, as its replicator doc holds it."""
    doc = replicator_docs(couch, share_id)[f"sharing-broker-{share_id}-owner-to-recipient"]
    return doc["source"]["auth"]["basic"]["password"]


def endpoint(base_url: str, db: str, share_id: str, password: str) -> dict:
    auth = {"basic": {"username": f"sharing-broker-{share_id}", "password": password}}
    return {"url": f"{base_url}/{db}", "auth": auth}


def assert_only_replication_wrote(couch, owner_db: str, before: dict) -> None:
    """Each database's docs are as `before` ({db: revisions}), but for copies of the
    owner's docs (on Apache CouchDB, replication runs as soon as the share exists)."""
    owners = revisions(couch, owner_db)
    for db, revs in before.items():
        after = revisions(couch, db)
        assert {doc_id: after.get(doc_id) for doc_id in revs} == revs
        carried = {doc_id: rev for doc_id, rev in after.items() if doc_id not in revs}
        assert carried.items() <= owners.items(), carried


def test_read_share_writes_one_replicator_doc_and_nothing_else(
    client, couch, registered, dbs, settings
):
    before = {db: revisions(couch, db) for db in dbs.values()}
    share = create_share(client)
    assert share["status"] == "active"
    assert share["access"] == "read" and share["collections"] == ["c0ll-uuid-1"]
    assert share["db_sharing_doc_id"] is None
    doc_id = f"sharing-broker-{share['id']}-owner-to-recipient"
    assert share["replications"] == [
        {
            "id": doc_id,
            "direction": "owner-to-recipient",
            "source_database": dbs["alice"],
            "source_server": "default",
            "target_database": dbs["bob"],
            "target_server": "default",
        }
    ]
    password = share_password(couch, share["id"])
    assert len(password) >= 43  # 256 bits, URL-safe base64
    assert replicator_docs(couch, share["id"]) == {
        doc_id: {
            "_id": doc_id,
            "source": endpoint(settings.replication_url, dbs["alice"], share["id"], password),
            "target": endpoint(settings.replication_url, dbs["bob"], share["id"], password),
            "continuous": True,
            "create_target": False,
            "selector": share_selector(ALICE, BOB, Access.READ, Scope(["c0ll-uuid-1"]), O2R),
            "sharing_broker": {
                "broker": settings.state_db,
                "share_id": share["id"],
                "direction": "owner-to-recipient",
            },
        }
    }
    assert_only_replication_wrote(couch, dbs["alice"], before)


def test_the_share_user_is_a_member_of_exactly_the_two_databases_by_its_roles(
    client, couch, registered, dbs, settings
):
    share = create_share(client, access="read-write")
    name = f"sharing-broker-{share['id']}"
    user = couch.get(f"_users/org.couchdb.user:{name}")
    assert "password" not in user
    assert user["sharing_broker"] == {"broker": settings.state_db, "share_id": share["id"]}
    held = {r for r in user["roles"] if r.startswith(MEMBER_ROLE)}
    assert held == {member_role(dbs["alice"]), member_role(dbs["bob"])}
    assert set(scopes_in_roles(user["roles"])) == {dbs["alice"], dbs["bob"]}
    assert len(user["roles"]) == 4  # and no other: no `_admin`, nothing of another share
    for person in ("alice", "bob"):  # the owner's entry kept; no share user named
        members = couch.get(f"{dbs[person]}/_security")["members"]
        assert members == {"names": [dbs[person]], "roles": [member_role(dbs[person])]}
    replicators = str(couch.all_docs("_replicator"))
    assert settings.couchdb_password not in replicators


def test_a_public_database_is_refused_and_left_public(client, couch, registered, dbs):
    couch.put(
        f"{dbs['bob']}/_security",
        {"admins": {"names": [], "roles": []}, "members": {"names": [], "roles": []}},
    )
    response = client.post("/v1/shares", json={"owner": ALICE, "recipient": BOB, "access": "read"})
    assert response.status_code == 409
    assert "members" in response.get_json()["detail"]
    assert couch.get(f"{dbs['bob']}/_security")["members"] == {"names": [], "roles": []}
    assert couch.get(f"{dbs['alice']}/_security")["members"]["names"] == [dbs["alice"]]
    assert client.get("/v1/shares").get_json()["items"] == []


def test_the_stored_selector_selects_exactly_the_shared_docs(client, couch, registered, dbs):
    share = create_share(client)
    (doc,) = replicator_docs(couch, share["id"]).values()
    assert find_ids(couch, dbs["alice"], doc["selector"]) == COLLECTION_1


def test_read_write_share_writes_db_sharing_and_both_directions(
    client, couch, registered, dbs, settings
):
    bob_before = revisions(couch, dbs["bob"])
    share = create_share(client, access="read-write")
    db_sharing_id = f"db_sharing-{ALICE}--{BOB}"
    assert share["db_sharing_doc_id"] == db_sharing_id
    db_sharing = couch.all_docs(dbs["alice"])[db_sharing_id]
    assert db_sharing["type"] == "db_sharing"
    assert db_sharing["data"] == {"permissions": ["read", "write"]}
    assert isinstance(db_sharing["created_at"], int)
    docs = replicator_docs(couch, share["id"])
    o2r = docs[f"sharing-broker-{share['id']}-owner-to-recipient"]
    r2o = docs[f"sharing-broker-{share['id']}-recipient-to-owner"]
    assert len(docs) == 2
    password = share_password(couch, share["id"])
    assert (r2o["source"], r2o["target"]) == (
        endpoint(settings.replication_url, dbs["bob"], share["id"], password),
        endpoint(settings.replication_url, dbs["alice"], share["id"], password),
    )
    assert find_ids(couch, dbs["alice"], o2r["selector"]) == COLLECTION_1 | {db_sharing_id}
    assert not find_ids(couch, dbs["bob"], r2o["selector"]) & set(bob_before)  # Bob's stay his
    assert [r["direction"] for r in share["replications"]] == [str(O2R), str(R2O)]
    assert_only_replication_wrote(couch, dbs["alice"], {dbs["bob"]: bob_before})


def test_read_write_on_all_collections_sends_back_only_the_owners_collections(
    client, couch, registered, dbs
):
    share = create_share(client, access="read-write", collections=None)
    assert share["collections"] is None
    docs = replicator_docs(couch, share["id"])
    o2r = docs[f"sharing-broker-{share['id']}-owner-to-recipient"]
    r2o = docs[f"sharing-broker-{share['id']}-recipient-to-owner"]
    shared = COLLECTION_1 | COLLECTION_2 | {f"db_sharing-{ALICE}--{BOB}"}
    assert find_ids(couch, dbs["alice"], o2r["selector"]) == shared
    # Bob's edits of Alice's collections come back; Bob's own collection never leaves.
    assert find_ids(couch, dbs["alice"], r2o["selector"]) == COLLECTION_1 | COLLECTION_2
    assert "collection-b0b-coll-1" not in find_ids(couch, dbs["bob"], r2o["selector"])


@pytest.mark.parametrize(
    ("fields", "status", "field"),
    [
        ({"owner": UNKNOWN}, 404, "owner"),
        ({"recipient": UNKNOWN}, 404, "recipient"),
        ({"recipient": ALICE}, 422, "recipient"),
        ({"collections": ["no-such-collection"]}, 422, "collections"),
        ({"collections": ["it3m-uuid-1"]}, 422, "collections"),
        ({"collections": []}, 422, "collections"),
        ({"collections": ["bad id!"]}, 422, "collections.0"),
        ({"access": "write"}, 422, "access"),
        ({"owner": "not-a-uuid"}, 422, "owner"),
        ({"owner": None}, 422, "owner"),
        ({"extra": 1}, 422, "extra"),
    ],
)
def test_create_refuses_bad_input_naming_the_field(client, registered, fields, status, field):
    body = {"owner": ALICE, "recipient": BOB, "access": "read", **fields}
    response = client.post("/v1/shares", json=body)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == status and problem["detail"]
    assert field in problem["errors"]


def test_create_refused_leaves_nothing_behind(client, couch, registered, dbs):
    client.post(
        "/v1/shares",
        json={"owner": ALICE, "recipient": BOB, "access": "read", "collections": ["nope"]},
    )
    assert client.get("/v1/shares").get_json()["items"] == []


def test_a_second_live_share_for_the_pair_is_409(client, registered):
    create_share(client)
    response = client.post("/v1/shares", json={"owner": ALICE, "recipient": BOB, "access": "read"})
    assert response.status_code == 409
    assert "PATCH" in response.get_json()["detail"]
    # The other direction is another pair.
    create_share(client, owner=BOB, recipient=ALICE, collections=["b0b-coll-1"])


@pytest.mark.couchdb
def test_get_reports_live_status_from_the_scheduler(client, couch, registered):
    share = create_share(client)

    def status() -> dict:
        return client.get(f"/v1/shares/{share['id']}").get_json()["replications"][0]

    wait_for(
        lambda: status()["replication_status"]["docs_written"] == 4, "4 docs written", couch=couch
    )
    assert status()["replication_status"] == {
        "state": "running",
        "docs_written": 4,
        "doc_write_failures": 0,
        "error": None,
        "as_of": None,  # live, not recorded
    }


@pytest.mark.couchdb
def test_get_reports_a_crashing_replication_without_credentials(client, couch, registered):
    share = create_share(client, access="read-write")
    password = share_password(couch, share["id"])
    couch.delete_doc("_users", f"org.couchdb.user:sharing-broker-{share['id']}")

    def statuses() -> list[dict]:
        replications = client.get(f"/v1/shares/{share['id']}").get_json()["replications"]
        return [r["replication_status"] for r in replications]

    crashing = wait_for(
        lambda: [s for s in statuses() if s["state"] == "crashing" and s["error"]],
        "a crashing replication",
        couch=couch,
    )
    assert "unauthorized" in crashing[0]["error"] or "401" in crashing[0]["error"]
    assert password not in str(statuses())


@pytest.mark.pouchdb_only
def test_get_says_unknown_where_the_server_has_no_scheduler(client, registered):
    share = create_share(client, access="read-write")
    response = client.get(f"/v1/shares/{share['id']}")
    assert response.headers["ETag"].startswith('"')
    states = [r["replication_status"]["state"] for r in response.get_json()["replications"]]
    assert states == ["unknown", "unknown"]


def test_get_unknown_share_is_404(client, registered):
    response = client.get(f"/v1/shares/{UNKNOWN}")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_list_filters_by_database_role_and_status(client, registered):
    ab = create_share(client)
    ba = create_share(client, owner=BOB, recipient=ALICE, collections=["b0b-coll-1"])
    client.delete(f"/v1/shares/{ba['id']}")

    def ids(query: str) -> set[str]:
        response = client.get(f"/v1/shares?{query}")
        assert response.status_code == 200, response.get_json()
        return {s["id"] for s in response.get_json()["items"]}

    assert ids("") == {ab["id"], ba["id"]}
    assert ids(f"database={ALICE}&role=owner") == {ab["id"]}
    assert ids(f"database={ALICE}&role=recipient") == {ba["id"]}
    assert ids(f"database={BOB}") == {ab["id"], ba["id"]}
    assert ids("status=active") == {ab["id"]}
    assert ids("status=revoked") == {ba["id"]}
    assert client.get(f"/v1/shares?database={UNKNOWN}").status_code == 404


def test_list_pages_with_a_cursor(client, registered):
    created = {
        create_share(client)["id"],
        create_share(client, owner=BOB, recipient=ALICE, collections=["b0b-coll-1"])["id"],
    }
    first = client.get("/v1/shares?limit=1").get_json()
    second = client.get(f"/v1/shares?limit=1&cursor={first['next_cursor']}").get_json()
    assert second["next_cursor"] is None
    assert {s["id"] for s in first["items"] + second["items"]} == created


def test_list_refuses_a_role_without_a_database(client):
    response = client.get("/v1/shares?role=owner")
    assert response.status_code == 422
    assert "role" in response.get_json()["errors"]


@pytest.mark.parametrize("cursor", ["!", "not-a-cursor", "share:x"])
def test_a_garbage_cursor_is_422(client, registered, cursor):
    response = client.get(f"/v1/shares?cursor={cursor}")
    assert response.status_code == 422
    assert "cursor" in response.get_json()["errors"]
