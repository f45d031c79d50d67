"""Liveness and readiness."""

import pytest
import requests

pytestmark = pytest.mark.fallback  # also run on pouchdb-server


def test_ready_when_couchdb_answers_and_the_state_db_exists(client, couch, settings):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "servers": {"default": "ok"}}
    assert settings.state_db in couch.get("_all_dbs")


def test_readiness_creates_a_missing_state_db(client, couch, settings):
    couch.request("DELETE", settings.state_db).raise_for_status()
    assert client.get("/readyz").status_code == 200
    assert settings.state_db in couch.get("_all_dbs")


def test_alive_says_ok(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_the_state_db_is_for_server_admins_only(client, couch, settings, people):
    name, password = people["dave"]
    url = f"{couch.url}/{settings.state_db}/_all_docs"
    response = requests.get(url, auth=(name, password), timeout=10)
    assert response.status_code in (401, 403)
    security = couch.get(f"{settings.state_db}/_security")
    assert security["members"] == {"names": [], "roles": ["_admin"]}


def test_not_ready_while_others_can_read_the_state_db(client, couch, settings):
    assert client.get("/readyz").status_code == 200
    couch.put(f"{settings.state_db}/_security", {})  # as pouchdb-server or `everyone` leaves it

    response = client.get("/readyz")

    assert response.status_code == 503
    assert "every CouchDB user may read and write it" in response.get_json()["detail"]
