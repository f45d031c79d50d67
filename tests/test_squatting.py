"""A Configuration UUID claimed by a second database is disputed, and a registration is
checked again against `0000-config` before anything is provisioned."""

import pytest

from service.sharing.core.model import Event
from tests.conftest import ADMIN_TOKEN, CAROL
from tests.servers.demo import ALICE, BOB
from tests.test_users import basic

pytestmark = pytest.mark.fallback  # also run on pouchdb-server

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ERIN = "e4e4e4e4-5555-4e4e-8e8e-666677778888"
INVITE = {"owner": ALICE, "recipient": BOB, "access": "read", "collections": ["c0ll-uuid-1"]}


def as_(who: tuple[str, str]) -> dict:
    return {"headers": basic(*who)}


def claim(couch, client, people, uuid: str) -> None:
    """Carol writes another's UUID into her own config and registers: a claim."""
    config = couch.get(f"{people['carol_db']}/0000-config")
    couch.put(f"{people['carol_db']}/0000-config", {**config, "uuid": uuid})
    response = client.post(
        "/v1/databases", json={"database": people["carol_db"]}, **as_(people["carol"])
    )
    # Answered as a new registration would be: no one learns whether a UUID is taken.
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["config_uuid"] == uuid


def give_back(couch, people) -> None:
    config = couch.get(f"{people['carol_db']}/0000-config")
    couch.put(f"{people['carol_db']}/0000-config", {**config, "uuid": CAROL})


def test_a_squatted_uuid_is_disputed_until_an_admin_removes_the_wrong_registration(
    app, couch, dbs, people
):
    client = app.test_client()
    bob, alice = people["bob"], people["alice"]
    assert client.delete(f"/v1/databases/{BOB}", headers=ADMIN).status_code == 204  # not yet
    claim(couch, client, people, BOB)  # Carol registers Bob's UUID before he does
    # Bob's own registration is now the claim; it is answered the same way.
    bobs = client.post("/v1/databases", json={"database": dbs["bob"]}, **as_(bob))
    assert bobs.status_code == 201

    (dispute,) = client.get("/v1/databases/disputes", headers=ADMIN).get_json()["items"]
    assert (dispute["config_uuid"], dispute["claims"]) == (BOB, [dbs["bob"]])
    invited = client.post("/v1/shares", json=INVITE, **as_(alice))
    assert invited.status_code == 409 and BOB in invited.get_json()["detail"]
    assert "recipient" in invited.get_json()["errors"]

    assert client.delete(f"/v1/databases/{BOB}", headers=ADMIN).status_code == 204
    assert client.get("/v1/databases/disputes", headers=ADMIN).get_json()["items"] == []
    assert (
        client.post("/v1/databases", json={"database": dbs["bob"]}, **as_(bob)).status_code == 201
    )
    assert client.post("/v1/shares", json=INVITE, **as_(alice)).status_code == 201


def test_a_claim_whose_database_gave_the_uuid_back_is_void(app, couch, registered, people):
    """Carol claims Bob's UUID, then puts her own back: Bob's sharing is not blocked."""
    client = app.test_client()
    claim(couch, client, people, BOB)
    give_back(couch, people)

    invited = client.post("/v1/shares", json=INVITE, **as_(people["alice"]))

    assert invited.status_code == 201, invited.get_json()
    assert client.get("/v1/databases/disputes", headers=ADMIN).get_json()["items"] == []


def test_a_holder_that_shares_already_keeps_sharing(app, couch, client, registered, people):
    assert client.post("/v1/shares", json=INVITE).status_code == 201  # Bob shares: established
    claim(couch, app.test_client(), people, BOB)  # Carol keeps Bob's UUID in her config
    erin_db = f"{people['carol_db']}-erin"
    couch.create_db(erin_db, [{"_id": "0000-config", "uuid": ERIN}])
    couch.add_member(erin_db, "erin")
    try:
        assert client.post("/v1/databases", json={"database": erin_db}).status_code == 201
        from_bob = {"owner": BOB, "recipient": ERIN, "access": "read", "collections": None}

        response = client.post("/v1/shares", json=from_bob)
        assert response.status_code == 201, response.get_json()
    finally:
        couch.delete(erin_db)


def test_an_admin_dismisses_a_claim_without_touching_the_holder(app, couch, registered, people):
    client = app.test_client()
    claim(couch, client, people, BOB)
    invited = client.post("/v1/shares", json=INVITE, **as_(people["alice"]))
    assert invited.status_code == 409  # Bob shares nothing yet, and the claim holds

    assert client.delete(f"/v1/databases/disputes/{BOB}", headers=ADMIN).status_code == 204

    assert (
        client.get(f"/v1/databases/{BOB}", headers=ADMIN).get_json()["database"]
        != (people["carol_db"])
    )
    assert client.post("/v1/shares", json=INVITE, **as_(people["alice"])).status_code == 201
    gone = client.delete(f"/v1/databases/disputes/{BOB}", headers=ADMIN)
    assert gone.status_code == 404
    not_admin = client.delete(f"/v1/databases/disputes/{BOB}", **as_(people["alice"]))
    assert not_admin.status_code == 403


def test_a_party_whose_config_moved_on_is_refused_before_provisioning(
    client, couch, registered, dbs
):
    invitation = client.post("/v1/shares", json={**INVITE, "auto_accept": False}).get_json()
    config = couch.get(f"{dbs['bob']}/0000-config")
    couch.put(
        f"{dbs['bob']}/0000-config", {**config, "uuid": "0b0b0b0b-0000-4000-8000-000000000000"}
    )

    accepted = client.post(f"/v1/shares/{invitation['id']}/accept")

    assert accepted.status_code == 409
    assert "no longer holds it" in accepted.get_json()["detail"]
    assert client.get(f"/v1/shares/{invitation['id']}").get_json()["status"] == "pending"
    names = couch.get(f"{dbs['alice']}/_security")["members"]["names"]
    assert [n for n in names if n.startswith("sharing-broker-")] == []


def test_only_admins_list_disputes(app, people):
    response = app.test_client().get("/v1/databases/disputes", headers=basic(*people["alice"]))
    assert response.status_code == 403


def test_a_database_has_one_registration_whatever_uuids_it_moves_through(
    client, couch, registered, dbs
):
    """Alice rewrites her config to get a second live share with Bob's database: refused.
    Without a live share, the new UUID supersedes the old registration."""
    assert client.post("/v1/shares", json=INVITE).status_code == 201
    config = couch.get(f"{dbs['alice']}/0000-config")
    moved = "a11ce000-0000-4000-8000-000000000001"
    couch.put(f"{dbs['alice']}/0000-config", {**config, "uuid": moved})

    again = client.post("/v1/databases", json={"database": dbs["alice"]})

    assert again.status_code == 409, again.get_json()
    assert "live share" in again.get_json()["detail"]
    assert client.get(f"/v1/databases/{moved}").status_code == 404

    (share,) = client.get("/v1/shares").get_json()["items"]
    assert client.delete(f"/v1/shares/{share['id']}").status_code == 200
    assert client.post("/v1/databases", json={"database": dbs["alice"]}).status_code == 201
    assert client.get(f"/v1/databases/{ALICE}").status_code == 404  # superseded
    assert client.get(f"/v1/databases/{moved}").get_json()["database"] == dbs["alice"]


def test_claims_that_change_while_an_admin_dismisses_them_are_a_409(
    app, couch, people, monkeypatch
):
    """Another claim arrives between the admin's read and the dismissal: nothing is
    dismissed unseen, and the admin is told to look again."""
    client = app.test_client()
    claim(couch, client, people, ALICE)
    store = app.extensions["sharing_broker"].store
    read, raced = store.get_doc, []

    def read_then_another_claims(doc_id):
        found = read(doc_id)
        if doc_id.startswith("dispute:") and not raced:
            raced.append(doc_id)
            another = Event("", "claim", "user:erin", "ok", database=ALICE)
            store.record_dispute(ALICE, "inventory-erin", another)
        return found

    monkeypatch.setattr(store, "get_doc", read_then_another_claims)
    response = client.delete(f"/v1/databases/disputes/{ALICE}", headers=ADMIN)
    assert response.status_code == 409, response.get_json()
    assert raced
    monkeypatch.undo()
    (dispute,) = client.get("/v1/databases/disputes", headers=ADMIN).get_json()["items"]
    assert "inventory-erin" in dispute["claims"]
