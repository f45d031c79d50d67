"""An earlier sealed state of a record, written back, is never acted on (#26, item 7).

The attacker is a writer of an exposed state database: no record key, but every record the
broker ever wrote is theirs to copy. These tests write back the sealed `active` record of a
share after its revoke, as a plain update and as a graft at its own revision.
"""

import hashlib
import hmac
import json

import pytest

from service.app import create_app, ensure_state_db
from service.sharing.core.model import Database
from service.sharing.core.seal import SEALED_FIELDS
from service.sharing.core.store import SEALS_DDOC
from tests.conftest import ADMIN_TOKEN
from tests.consistency import broker_parts
from tests.helpers import create_share
from tests.servers.demo import ALICE

RW = {"access": "read-write", "collections": ["c0ll-uuid-1"]}


@pytest.fixture
def revoked(client, couch, settings, registered, dbs):
    """A share revoked after its active record was copied: (share id, that copy)."""
    share = create_share(client, **RW)
    active = couch.get(f"{settings.state_db}/share:{share['id']}")
    assert active["status"] == "active"
    assert client.delete(f"/v1/shares/{share['id']}").status_code == 200
    return share["id"], active


def provisioned(couch, dbs, share_id: str) -> dict:
    """What CouchDB holds for the share: its user, its replicator docs, its db_sharing."""
    user = couch.request("GET", f"_users/org.couchdb.user:sharing-broker-{share_id}")
    return {"user": user.status_code != 404, **broker_parts(couch, dbs)}


NOTHING = {"user": False, "replications": set(), "db_sharing": set()}


def test_an_earlier_state_written_over_the_record_is_refused(client, couch, settings, revoked, dbs):
    share_id, active = revoked
    path = f"{settings.state_db}/share:{share_id}"
    couch.put(path, {**active, "_rev": couch.get(path)["_rev"]})

    assert client.get(f"/v1/shares/{share_id}").status_code == 404
    listed = client.get("/v1/shares", query_string={"owner": ALICE}).get_json()["items"]
    assert share_id not in {s["id"] for s in listed}
    report = client.post("/v1/reconcile").get_json()

    finding = {"kind": "unsealed record", "record": f"share:{share_id}"}
    assert {**finding, "error": "not written by this broker: refused"} in report["errors"]
    assert provisioned(couch, dbs, share_id) == NOTHING


@pytest.mark.couchdb  # pouchdb-server reads a doc's leaves as one
def test_an_earlier_state_grafted_back_at_its_own_revision_is_undone(
    client, couch, settings, revoked, dbs
):
    """`new_edits=false` puts the copy back as a leaf at its own revision number; deleting
    the later branch makes it the winner."""
    share_id, active = revoked
    path = f"{settings.state_db}/share:{share_id}"
    number = active["_rev"].split("-")[0]
    graft = {**active, "_rev": f"{number}-{'f' * 32}"}
    written = couch.request(
        "POST", f"{settings.state_db}/_bulk_docs", json={"docs": [graft], "new_edits": False}
    )
    assert written.status_code == 201
    couch.delete(path, rev=couch.get(path, rev=_latest_leaf(couch, path))["_rev"])
    assert couch.get(path)["status"] == "active"  # what every reader of CouchDB now sees

    assert client.get(f"/v1/shares/{share_id}").status_code == 404
    report = client.post("/v1/reconcile").get_json()

    finding = {"kind": "replayed record", "record": f"share:{share_id}"}
    assert {**finding, "action": "wrote back the latest state the broker sealed"} in report[
        "repaired"
    ]
    assert client.get(f"/v1/shares/{share_id}").get_json()["status"] == "revoked"
    assert provisioned(couch, dbs, share_id) == NOTHING
    again = client.post("/v1/reconcile").get_json()
    assert again["repaired"] == [] and again["errors"] == []


def _latest_leaf(couch, path: str) -> str:
    """The revision of the record's later (broker-written) branch."""
    rows = couch.request("GET", path, params={"open_revs": "all"}).json()
    live = [row["ok"]["_rev"] for row in rows if "ok" in row and not row["ok"].get("_deleted")]
    return max(live, key=lambda rev: int(rev.split("-")[0]))


@pytest.mark.fallback
def test_a_registration_removed_and_made_again_is_sealed_for_its_revision(
    client, couch, settings, registered, dbs
):
    """CouchDB numbers a doc written over a deleted one past its tombstone."""
    assert client.delete(f"/v1/databases/{ALICE}").status_code == 204
    assert client.post("/v1/databases", json={"database": dbs["alice"]}).status_code == 201

    record = couch.get(f"{settings.state_db}/{Database.doc_id(ALICE)}")
    assert int(record["_rev"].split("-")[0]) > 1
    assert client.get(f"/v1/databases/{ALICE}").status_code == 200


@pytest.mark.fallback
def test_records_sealed_before_the_seal_bound_a_revision_are_resealed_once(
    client, couch, settings, registered
):
    """An earlier version sealed the deciding fields alone; the first start of this one
    seals them again, bound to their revision, and says so in a design doc."""
    record_path = f"{settings.state_db}/{Database.doc_id(ALICE)}"
    _seal_unbound(couch, settings, record_path)
    assert client.get(f"/v1/databases/{ALICE}").status_code == 404  # refused as it stands
    marker = couch.get(f"{settings.state_db}/{SEALS_DDOC['_id']}")
    couch.delete(f"{settings.state_db}/{SEALS_DDOC['_id']}", rev=marker["_rev"])

    assert _started_again(settings).get(f"/v1/databases/{ALICE}").status_code == 200

    _seal_unbound(couch, settings, record_path)  # as a replay of a record from before
    assert _started_again(settings).get(f"/v1/databases/{ALICE}").status_code == 404


def _seal_unbound(couch, settings, path: str) -> None:
    """Seal the record as the broker did before its seals bound a revision."""
    doc = couch.get(path)
    deciding = {name: doc[name] for name in SEALED_FIELDS[doc["type"]]}
    payload = json.dumps(deciding, sort_keys=True, separators=(",", ":")).encode()
    seal = hmac.new(settings.record_key.encode(), payload, hashlib.sha256).hexdigest()
    couch.put(path, {**doc, "seal": seal})


def _started_again(settings):
    """A client of a broker process started anew on the same state database."""
    app = create_app(settings)
    ensure_state_db(app)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN_TOKEN}"
    return client
