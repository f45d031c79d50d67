"""Liveness and readiness."""

import pytest
import requests

from service.sharing.core.model import Database, Event, now_iso
from service.sharing.watching.followers import FollowersLease
from tests.conftest import CAROL

pytestmark = pytest.mark.fallback  # also run on pouchdb-server


def test_ready_when_couchdb_answers_and_the_state_db_exists(client, couch, settings):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "servers": {"default": "ok"},
        "followers": "ok",
    }
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


def test_a_replica_that_does_not_know_a_server_never_leads_the_followers(app, client):
    """Two replicas share the state, one with a server the other lacks: the one without it
    would stop the runs and watches of the shares there, so it never takes the lease."""
    store = app.extensions["sharing_broker"].store
    registered = Event("", "register", "admin:test", "ok", database=CAROL)
    store.add_database(Database(CAROL, "inventory-elsewhere", "second", now_iso()), registered)
    lacking = FollowersLease(store, {"default"}, 6.0)

    assert lacking.hold() is False
    assert "sharing_broker_followers_unknown_servers 1.0" in client.get("/metrics").text
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["status"] == "degraded"
    assert "unknown here: second" in ready.get_json()["followers"]
    knowing = FollowersLease(store, {"default", "second"}, 6.0)
    assert knowing.hold() is True
    knowing.drop()
    assert lacking.hold() is False  # free, and still not for it
