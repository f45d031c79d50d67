"""A Configuration UUID claimed by a second database is disputed, and a registration is
checked again against `0000-config` before anything is provisioned."""

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.servers.demo import ALICE, BOB
from tests.test_users import basic

pytestmark = pytest.mark.fallback  # also run on pouchdb-server

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
INVITE = {"owner": ALICE, "recipient": BOB, "access": "read", "collections": ["c0ll-uuid-1"]}


def test_a_squatted_uuid_is_disputed_until_an_admin_removes_the_wrong_registration(
    app, couch, dbs, people
):
    client = app.test_client()
    carol, bob, alice = (people[p] for p in ("carol", "bob", "alice"))
    assert client.delete(f"/v1/databases/{BOB}", headers=ADMIN).status_code == 204  # not yet
    # Carol copies Bob's UUID into her own config and registers before he does.
    config = couch.get(f"{people['carol_db']}/0000-config")
    couch.put(f"{people['carol_db']}/0000-config", {**config, "uuid": BOB})
    as_ = lambda who: {"headers": basic(*who)}  # noqa: E731
    carols = client.post("/v1/databases", json={"database": people["carol_db"]}, **as_(carol))
    assert carols.status_code == 201

    bobs = client.post("/v1/databases", json={"database": dbs["bob"]}, **as_(bob))

    assert bobs.status_code == 409 and "disputed" in bobs.get_json()["detail"]
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
