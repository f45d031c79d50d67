"""Registering databases by the Configuration UUID in their `0000-config`."""

import pytest

from tests.servers.demo import ALICE, BOB

pytestmark = pytest.mark.fallback  # also run on pouchdb-server


def test_register_reads_the_uuid_from_0000_config(client, dbs):
    response = client.post("/v1/databases", json={"database": dbs["alice"]})
    assert response.status_code == 201
    body = response.get_json()
    assert body["config_uuid"] == ALICE
    assert body["database"] == dbs["alice"]
    assert body["server"] == "default"
    assert body["registered_at"].endswith("Z")
    assert response.headers["Location"].endswith(f"/v1/databases/{ALICE}")
    assert client.get(f"/v1/databases/{ALICE}").get_json() == body


def test_register_again_is_idempotent(client, dbs):
    first = client.post("/v1/databases", json={"database": dbs["alice"]})
    again = client.post("/v1/databases", json={"database": dbs["alice"]})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json() == first.get_json()


def test_register_unknown_database_is_404(client, dbs):
    response = client.post("/v1/databases", json={"database": "no-such-db"})
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert "database" in response.get_json()["errors"]


def test_register_without_0000_config_is_422(client, couch, names):
    couch.create_db(names["alice"], [{"_id": "item-1", "type": "item", "data": {}}])
    response = client.post("/v1/databases", json={"database": names["alice"]})
    assert response.status_code == 422
    assert "0000-config" in response.get_json()["errors"]["database"][0]


def test_register_with_invalid_uuid_is_422(client, couch, names):
    for bad in ["not-a-uuid", 42, ALICE.upper(), None]:
        db = f"{names['alice']}-{len(str(bad))}-{type(bad).__name__}".lower()
        couch.create_db(db, [{"_id": "0000-config", "uuid": bad}])
        response = client.post("/v1/databases", json={"database": db})
        assert response.status_code == 422, bad


def test_a_uuid_registered_to_another_database_is_claimed_not_taken(client, couch, dbs, names):
    """The answer is a registration's, so it says nothing of whose the UUID is; the UUID
    stays with its holder, and the claim waits for an admin."""
    client.post("/v1/databases", json={"database": dbs["alice"]})
    clone = names["alice"] + "-clone"
    couch.create_db(clone, [{"_id": "0000-config", "uuid": ALICE}])
    try:
        response = client.post("/v1/databases", json={"database": clone})
        assert response.status_code == 201
        assert client.get(f"/v1/databases/{ALICE}").get_json()["database"] == dbs["alice"]
        (dispute,) = client.get("/v1/databases/disputes").get_json()["items"]
        assert dispute["claims"] == [clone]
    finally:
        couch.delete(clone)


def test_bad_names_are_422_naming_the_field(client):
    for body in [{}, {"database": ""}, {"database": "Upper"}, {"database": "_users"}, {"x": 1}]:
        response = client.post("/v1/databases", json=body)
        assert response.status_code == 422, body
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["errors"], body


def test_invalid_json_is_400(client):
    response = client.post("/v1/databases", data="{", content_type="application/json")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


def test_unknown_uuid_is_404(client, registered):
    response = client.get("/v1/databases/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert response.get_json()["status"] == 404


def test_list_pages_with_a_cursor(client, registered):
    first = client.get("/v1/databases?limit=1").get_json()
    assert len(first["items"]) == 1 and first["next_cursor"]
    second = client.get(f"/v1/databases?limit=1&cursor={first['next_cursor']}").get_json()
    assert second["next_cursor"] is None
    listed = {d["config_uuid"] for d in first["items"] + second["items"]}
    assert listed == {ALICE, BOB}


def test_list_rejects_bad_limits(client):
    for limit in ["0", "201", "x"]:
        response = client.get(f"/v1/databases?limit={limit}")
        assert response.status_code == 422
        assert "limit" in response.get_json()["errors"]


def test_delete_refused_while_shared_then_allowed(client, registered):
    share = client.post(
        "/v1/shares", json={"owner": ALICE, "recipient": BOB, "access": "read"}
    ).get_json()
    assert client.delete(f"/v1/databases/{BOB}").status_code == 409
    assert client.delete(f"/v1/shares/{share['id']}").status_code == 200
    assert client.delete(f"/v1/databases/{BOB}").status_code == 204
    assert client.get(f"/v1/databases/{BOB}").status_code == 404
    assert client.delete(f"/v1/databases/{BOB}").status_code == 404


@pytest.mark.parametrize("field", ["database", "owner", "collections"])
def test_an_identifier_with_a_trailing_newline_is_refused(client, registered, dbs, field):
    """`$` in a pattern matches before a final newline; every identifier is matched whole."""
    if field == "database":
        response = client.post("/v1/databases", json={"database": dbs["alice"] + "\n"})
    else:
        body = {"owner": ALICE, "recipient": BOB, "access": "read", "collections": ["c0ll-uuid-1"]}
        body[field] = ALICE + "\n" if field == "owner" else ["c0ll-uuid-1\n"]
        response = client.post("/v1/shares", json=body)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert field in str(response.get_json()["errors"])


def test_the_disputes_resource_allows_only_its_own_methods(client):
    """`disputes` is no Configuration UUID: DELETE there is not a registration's."""
    allowed = client.options("/v1/databases/disputes").headers["Allow"]
    assert "DELETE" not in allowed and "GET" in allowed
    response = client.delete("/v1/databases/disputes")
    assert response.status_code == 405
    assert "DELETE" not in response.headers["Allow"]
