"""Revoking: stop the way back, withdraw db_sharing, stop the way out, purge if asked."""

import pytest

from service.sharing.core.model import Access, Direction
from service.sharing.crossing.selectors import Scope, share_selector
from tests.helpers import (
    create_share,
    doc_state,
    replicate,
    replicator_docs,
    revisions,
    wait_for_docs,
    withdrawn_by,
)
from tests.servers.demo import ALICE, BOB

DB_SHARING = f"db_sharing-{ALICE}--{BOB}"
O2R = Direction.OWNER_TO_RECIPIENT


def test_revoke_read_share_stops_replication_and_keeps_the_data(client, couch, registered, dbs):
    share = create_share(client)
    replicate(
        couch,
        dbs["alice"],
        dbs["bob"],
        share_selector(ALICE, BOB, Access.READ, Scope(["c0ll-uuid-1"]), O2R),
    )
    bob_before = revisions(couch, dbs["bob"])
    response = client.delete(f"/v1/shares/{share['id']}")
    assert response.status_code == 200
    assert response.get_json()["status"] == "revoked"
    assert response.get_json()["replications"] == []
    assert replicator_docs(couch, share["id"]) == {}
    assert revisions(couch, dbs["bob"]) == bob_before
    assert client.delete(f"/v1/shares/{share['id']}").get_json()["status"] == "revoked"
    create_share(client)  # the pair is free again


@pytest.mark.couchdb  # db_sharing must have crossed
def test_revoke_read_write_goes_in_order(client, couch, registered, dbs, calls):
    share = create_share(client, access="read-write")
    wait_for_docs(couch, dbs["bob"], {DB_SHARING}, "db_sharing at Bob's")
    calls.calls.clear()
    assert client.delete(f"/v1/shares/{share['id']}").status_code == 200
    writes = [(m, p) for m, p in calls.writes() if not p.startswith("broker_state")]
    # Stage by stage. The user takes its membership and scopes with it: neither database's
    # `_security` nor its guard is written.
    stages = [
        {("POST", "_replicator/_bulk_docs")},  # both replications stop
        {("DELETE", f"{dbs['alice']}/{DB_SHARING}")},
        {("DELETE", f"_users/org.couchdb.user:sharing-broker-{share['id']}")},
        {("POST", f"{dbs['bob']}/_bulk_docs")},  # its copy of db_sharing deleted
    ]
    assert sorted(writes) == sorted(w for stage in stages for w in stage)
    order = [next(i for i, stage in enumerate(stages) if w in stage) for w in writes]
    assert order == sorted(order)
    assert withdrawn_by(couch, dbs["bob"], DB_SHARING) == share["id"]  # reaches devices
    assert doc_state(couch, dbs["alice"], DB_SHARING) == "deleted"


def test_revoke_of_unknown_share_is_404(client, registered):
    response = client.delete("/v1/shares/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404


def test_revoke_rejects_a_bad_purge_flag(client, registered):
    share = create_share(client)
    response = client.delete(f"/v1/shares/{share['id']}?purge=maybe")
    assert response.status_code == 422
    assert "purge" in response.get_json()["errors"]


def test_a_revoke_deletes_every_branch_of_its_replicator_docs(client, couch, registered, dbs):
    """A sibling, as CouchDB's own end-of-run write leaves one on a cluster, would be the
    doc CouchDB shows once the other branch is deleted."""
    share = create_share(client)
    path = f"_replicator/sharing-broker-{share['id']}-owner-to-recipient"
    sibling = {**couch.get(path), "_rev": "1-" + "0" * 32, "_replication_state": "completed"}
    body = {"docs": [sibling], "new_edits": False}
    assert couch.request("POST", "_replicator/_bulk_docs", json=body).ok

    assert client.delete(f"/v1/shares/{share['id']}").status_code == 200

    assert couch.request("GET", path).status_code == 404
