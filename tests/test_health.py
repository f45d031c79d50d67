"""Liveness and readiness."""


def test_ready_when_couchdb_answers_and_the_state_db_exists(client, couch, settings):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert settings.state_db in couch.get("_all_dbs")


def test_readiness_creates_a_missing_state_db(client, couch, settings):
    couch.request("DELETE", settings.state_db).raise_for_status()
    assert client.get("/readyz").status_code == 200
    assert settings.state_db in couch.get("_all_dbs")


def test_alive_says_ok(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
