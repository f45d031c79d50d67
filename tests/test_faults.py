"""Failures of CouchDB: 503 quickly, and nothing half-made in anyone's database."""

import logging
import re

import pytest
import requests

from service.app import create_app
from service.config import Settings
from service.sharing.core.model import Event
from tests.conftest import ADMIN_TOKEN
from tests.helpers import create_share, wait_for_docs, withdrawn_by
from tests.servers.admin import free_port
from tests.servers.demo import ALICE, BOB

DB_SHARING = f"db_sharing-{ALICE}--{BOB}"
RW = {"owner": ALICE, "recipient": BOB, "access": "read-write", "collections": ["c0ll-uuid-1"]}


def fail(faults, couch, method: str, path_pattern: str, body=None):
    """Make one kind of request to the real server fail."""
    url = re.compile(re.escape(couch.url) + "/" + path_pattern)
    if body is None:
        body = {"error": "internal_server_error", "reason": "injected"}
        return faults.add(method, url, status=500, json=body)
    return faults.add(method, url, body=body)


def broker_docs(couch, dbs) -> dict[str, list[str]]:
    """What the broker may have left: replicator docs touching these dbs, db_sharing docs."""
    replicator = [
        doc_id
        for doc_id, doc in couch.all_docs("_replicator").items()
        if dbs["alice"] in doc["source"]["url"] or dbs["alice"] in doc["target"]["url"]
    ]
    return {
        "replicator": replicator,
        "db_sharing": [i for i in couch.all_docs(dbs["alice"]) if i.startswith("db_sharing")],
    }


def test_unreachable_couchdb_gives_503_with_retry_after():
    port = free_port()  # nothing listens there
    settings = Settings(
        couchdb_url=f"http://127.0.0.1:{port}",
        couchdb_user="admin",
        couchdb_password="canary-password-0001",
        admin_tokens=(ADMIN_TOKEN,),
    )
    client = create_app(settings).test_client()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = client.post("/v1/databases", json={"database": "inventory-x"}, headers=headers)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.mimetype == "application/problem+json"
    assert "canary-password-0001" not in response.get_data(as_text=True)
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "fault"),
    [
        ("PUT", r"inventory-alice-\w+/db_sharing-.*", None),
        ("PUT", r"_users/.*", None),
        ("PUT", r"inventory-bob-\w+/_security", None),
        ("POST", r"_replicator/_bulk_docs", None),
        ("POST", r"_replicator/_bulk_docs", requests.ReadTimeout()),
        ("POST", r"_replicator/_bulk_docs", requests.ConnectionError()),
    ],
    ids=[
        "db_sharing 500",
        "user 500",
        "database made ready 500",
        "replications 500",
        "replications timeout",
        "dropped",
    ],
)
def test_a_failed_create_is_rolled_back(
    client, faults, couch, registered, dbs, method, path, fault
):
    injected = fail(faults, couch, method, path, fault)
    response = client.post("/v1/shares", json=RW)
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert broker_docs(couch, dbs) == {"replicator": [], "db_sharing": []}
    assert client.get("/v1/shares").get_json()["items"] == []
    faults.remove(injected)
    create_share(client, **RW)  # the pair was released


def test_a_create_that_cannot_be_rolled_back_stays_visible(client, faults, couch, registered, dbs):
    injected = [  # the replicator docs cannot be written, nor looked for to remove them
        fail(faults, couch, "POST", r"_replicator/_bulk_docs"),
        fail(faults, couch, "POST", r"_replicator/_all_docs"),
    ]
    assert client.post("/v1/shares", json=RW).status_code == 503
    (share,) = client.get("/v1/shares").get_json()["items"]
    assert share["status"] == "provisioning"
    assert share["operation"]["name"] == "roll back"
    for fault in injected:
        faults.remove(fault)
    assert client.delete(f"/v1/shares/{share['id']}").get_json()["status"] == "revoked"
    assert broker_docs(couch, dbs) == {"replicator": [], "db_sharing": []}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", r"_replicator/_bulk_docs"),
        ("DELETE", r"inventory-alice-\w+/db_sharing-.*"),
        ("DELETE", r"_users/.*"),
    ],
    ids=["stop replications", "remove db_sharing", "drop the user"],
)
def test_a_revoke_that_stops_half_way_is_finished_by_revoking_again(
    client, faults, couch, registered, dbs, method, path
):
    share = create_share(client, **RW)
    injected = fail(faults, couch, method, path)
    response = client.delete(f"/v1/shares/{share['id']}")
    assert response.status_code == 503
    stuck = client.get(f"/v1/shares/{share['id']}").get_json()
    assert stuck["status"] == "revoking"
    assert stuck["operation"]["name"] == "revoke"
    faults.remove(injected)
    assert client.delete(f"/v1/shares/{share['id']}").get_json()["status"] == "revoked"
    assert broker_docs(couch, dbs) == {"replicator": [], "db_sharing": []}


@pytest.mark.couchdb
def test_a_failed_withdrawal_is_finished_by_revoking_again(client, faults, couch, registered, dbs):
    share = create_share(client, **RW)
    wait_for_docs(couch, dbs["bob"], {DB_SHARING}, "db_sharing at Bob's")
    injected = fail(faults, couch, "POST", r"inventory-bob-\w+/_bulk_docs")
    assert client.delete(f"/v1/shares/{share['id']}?purge=true").status_code == 503
    stuck = client.get(f"/v1/shares/{share['id']}").get_json()
    assert stuck["operation"]["done"] == [
        "replication:recipient-to-owner",
        "replication:owner-to-recipient",
        "db_sharing",
        "access:recipient",
        "access:owner",
        "share_user",
    ]
    faults.remove(injected)
    assert client.delete(f"/v1/shares/{share['id']}").get_json()["status"] == "revoked"
    assert withdrawn_by(couch, dbs["bob"], DB_SHARING) == share["id"]


def test_a_failed_patch_is_undone(client, faults, couch, registered, dbs):
    share = create_share(client)
    etag = client.get(f"/v1/shares/{share['id']}").headers["ETag"]
    injected = fail(faults, couch, "POST", r"_replicator/_bulk_docs")
    response = client.patch(
        f"/v1/shares/{share['id']}", json={"access": "read-write"}, headers={"If-Match": etag}
    )
    assert response.status_code == 503
    faults.remove(injected)
    after = client.get(f"/v1/shares/{share['id']}").get_json()
    assert (after["status"], after["access"], after["operation"]) == ("active", "read", None)
    assert broker_docs(couch, dbs)["db_sharing"] == []
    assert len(broker_docs(couch, dbs)["replicator"]) == 1


def test_couchdb_refusing_the_service_credentials_is_502(couch, dbs):
    settings = Settings(
        couchdb_url=couch.url,
        couchdb_user="admin",
        couchdb_password="wrong-canary-password",
        admin_tokens=(ADMIN_TOKEN,),
    )
    client = create_app(settings).test_client()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = client.post("/v1/databases", json={"database": dbs["alice"]}, headers=headers)
    assert response.status_code == 502
    assert "wrong-canary-password" not in response.get_data(as_text=True)
    assert client.get("/readyz").status_code == 503


@pytest.mark.parametrize(("answers", "state"), [(1, "running"), (2, "unknown")])
def test_a_scheduler_that_stumbles_while_a_run_ends_leaves_the_share_readable(
    client, faults, couch, registered, dbs, answers, state
):
    """CouchDB 3.5 answers 500 `function_clause` for a one-shot doc whose run is ending:
    read once more, then say `unknown` rather than fail the whole share."""
    share = create_share(client, **{k: v for k, v in RW.items() if k not in ("owner", "recipient")})
    doc_id = share["replications"][0]["id"]
    body = {"error": "unknown_error", "reason": "function_clause"}
    scheduler = re.compile(re.escape(f"{couch.url}/_scheduler/docs/_replicator/{doc_id}"))
    stumbles = [faults.add("GET", scheduler, status=500, json=body) for _ in range(answers)]
    if answers == 1:
        faults.add("GET", scheduler, json={"state": "running", "info": {}})

    response = client.get(f"/v1/shares/{share['id']}")

    assert response.status_code == 200
    assert response.get_json()["replications"][0]["replication_status"]["state"] == state
    assert all(stumble.call_count == 1 for stumble in stumbles)


def test_a_dispute_that_cannot_be_written_is_logged(app, faults, couch, caplog):
    """Three conflicts in a row on the state database: the write is given up, not lost
    without a word."""
    store = app.extensions["sharing_broker"].store
    refused = {"id": "dispute:x", "error": "conflict", "reason": "Document update conflict."}
    bulk = re.compile(re.escape(couch.url) + "/[^/]+/_bulk_docs")
    faults.add("POST", bulk, status=201, json=[refused, {**refused, "id": "event:x"}])
    claimed = "5b1f0c7e-2d4a-4c8e-9a51-0c6f3e2b7a10"
    claim = Event("", "claim", "user:mallory", "ok", database=claimed)
    with caplog.at_level(logging.WARNING):
        store.record_dispute(claimed, "inventory-mallory", claim)
    assert "dispute:5b1f0c7e-2d4a-4c8e-9a51-0c6f3e2b7a10 not written" in caplog.text
    assert store.disputes() == []


@pytest.mark.parametrize("action", ["decline", "revoke"])
def test_losing_the_record_to_another_request_is_409_not_412(
    client, faults, couch, settings, registered, action
):
    """These take no If-Match: a record changed meanwhile is a conflict, never a failed
    precondition the caller did not set."""
    share = client.post("/v1/shares", json={**RW, "auto_accept": False}).get_json()
    lost = [
        {"id": f"share:{share['id']}", "error": "conflict", "reason": "Document update conflict."},
        {"id": "event", "error": "conflict", "reason": "Document update conflict."},
    ]
    state_bulk = re.compile(re.escape(f"{couch.url}/{settings.state_db}/_bulk_docs"))
    faults.add("POST", state_bulk, status=201, json=lost)
    if action == "decline":
        response = client.post(f"/v1/shares/{share['id']}/decline")
    else:
        response = client.delete(f"/v1/shares/{share['id']}")
    assert response.status_code == 409, response.get_json()
    assert response.get_json()["detail"].startswith("another request changed this share")


def test_a_record_the_cluster_could_not_read_is_503_not_404(client, faults, couch, settings):
    """`_bulk_get` answers 200 with an error in place of a doc whose copies did not answer
    in time: that is no missing share."""
    share_id = "00000000-0000-4000-8000-0000000000aa"
    unread = {"id": f"share:{share_id}", "error": "timeout", "reason": "no copy answered"}
    body = {"results": [{"id": f"share:{share_id}", "docs": [{"error": unread}]}]}
    url = re.compile(re.escape(f"{couch.url}/{settings.state_db}/_bulk_get"))
    faults.add("POST", url, json=body)

    response = client.get(f"/v1/shares/{share_id}")

    assert response.status_code == 503, response.get_json()
    assert response.mimetype == "application/problem+json"
