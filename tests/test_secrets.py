"""Canary secrets: the service password never shows in a response, a log line or the spec."""

import logging

import pytest

from service.app import create_app
from service.cli.server import SPEC_SETTINGS, openapi_yaml
from service.config import Settings
from tests.conftest import ADMIN_TOKEN
from tests.helpers import create_share

CANARY = "canary-5ecret-never-shown"


@pytest.fixture
def canary_client(couch, settings):
    """A broker whose service account's password is the canary."""
    name = f"broker-{settings.state_db}"
    couch.put(
        f"_users/org.couchdb.user:{name}",
        {"name": name, "password": CANARY, "roles": [], "type": "user"},
    )
    couch.set_config("admins", name, CANARY)
    canary = Settings(
        couchdb_url=couch.url,
        couchdb_user=f"broker-{settings.state_db}",
        couchdb_password=CANARY,
        admin_tokens=(ADMIN_TOKEN,),
        state_db=settings.state_db,
    )
    app = create_app(canary)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN_TOKEN}"
    assert client.get("/readyz").status_code == 200
    yield client
    couch.delete(f"{couch.config_path}/admins/{name}")
    couch.delete_doc("_users", f"org.couchdb.user:{name}")


def test_no_response_or_log_line_holds_the_password(canary_client, couch, dbs, caplog, faults):
    caplog.set_level(logging.DEBUG)
    client = canary_client
    bodies = []
    for name in (dbs["alice"], dbs["bob"]):
        bodies.append(client.post("/v1/databases", json={"database": name}))
    share = create_share(client, access="read-write")
    assert CANARY not in str(couch.all_docs("_replicator"))  # share users replicate
    bodies.append(client.get(f"/v1/shares/{share['id']}"))
    bodies.append(client.get("/v1/shares"))
    faults.put(
        f"{couch.url}/_replicator/sharing-broker-{share['id']}-recipient-to-owner",
        status=500,
        json={"error": "boom", "reason": f"http://x:{CANARY}@host"},
    )
    bodies.append(client.delete(f"/v1/shares/{share['id']}"))
    bodies.append(client.post("/v1/shares", json={"owner": "x"}))
    bodies.append(client.post("/v1/databases", data="{", content_type="application/json"))
    for response in bodies:
        assert CANARY not in response.get_data(as_text=True)
        assert CANARY not in str(dict(response.headers))
    assert CANARY not in caplog.text


def test_settings_repr_hides_secrets(settings):
    assert settings.couchdb_password not in repr(settings)
    assert ADMIN_TOKEN not in repr(settings)


def test_the_spec_holds_no_secret():
    spec = openapi_yaml()
    assert SPEC_SETTINGS.couchdb_password not in spec
    assert "basic:" not in spec and "auth:" not in spec
