"""What the broker's state converges to when two writers were both told yes.

On a cluster the state database keeps the cluster's copies, so two writers of one doc
through two nodes may both succeed, and the doc keeps both as branches. These tests make
such branches on any CouchDB by writing one past the revision check (`new_edits=false`), as
the second node would, and check the stated rules: a new share's id follows from its pair,
so two creates of a pair write one share; a stop wins over a change; a lease has one holder.
The same races, run for real through two nodes, are in `test_cluster.py`.
"""

import time

import pytest

from service.couch import CouchClient
from service.sharing.core.lease import Lease
from service.sharing.core.model import next_share_id
from service.sharing.core.seal import Seal
from service.sharing.core.store import StateStore
from service.sharing.watching.followers import one_pass
from tests.helpers import create_share, wait_for_docs
from tests.servers.demo import ALICE, BOB
from tests.test_reconcile import reconcile
from tests.test_runs import Updates

pytestmark = pytest.mark.couchdb

RW = {"access": "read-write", "collections": ["c0ll-uuid-1"]}


def test_a_pairs_shares_have_ids_that_follow_from_the_pair(client, settings, registered):
    first = create_share(client, **RW)
    assert client.delete(f"/v1/shares/{first['id']}").status_code == 200
    second = create_share(client, **RW)

    assert first["id"] == next_share_id(settings.state_db, ALICE, BOB, None)
    assert second["id"] == next_share_id(settings.state_db, ALICE, BOB, first["id"])
    assert client.get(f"/v1/shares/{first['id']}").get_json()["status"] == "revoked"


def test_a_create_that_finds_its_share_written_is_refused(
    client, couch, settings, registered, monkeypatch
):
    """The second of two identical creates, where one copy judges both: it read the pair
    before the first wrote, so it names the same share, and its write finds the claim and
    the record there. A 409 names that share, and nothing of the first is undone."""
    share = create_share(client, **RW)
    read = StateStore.get_databases_undisputed
    before_the_first = lambda store, uuids, also=None: (*read(store, uuids)[:2], None)  # noqa: E731
    monkeypatch.setattr(StateStore, "get_databases_undisputed", before_the_first)

    again = client.post("/v1/shares", json={"owner": ALICE, "recipient": BOB, **RW})

    assert again.status_code == 409
    assert share["id"] in again.get_json()["detail"]
    assert list(again.get_json()["errors"]) == ["recipient"]
    monkeypatch.undo()
    assert client.get(f"/v1/shares/{share['id']}").get_json()["status"] == "active"
    assert reconcile(client)["repaired"] == []


def test_a_stop_on_a_losing_branch_wins_over_a_change(client, couch, settings, registered, dbs):
    """A revoke and a change of one share, both told yes: the change's branch is the one
    CouchDB shows, and reconcile gives the share the revoke, then removes its parts."""
    share = create_share(client, **RW)
    wait_for_docs(couch, dbs["bob"], {f"db_sharing-{ALICE}--{BOB}"}, "db_sharing at Bob's")
    path = f"{settings.state_db}/share:{share['id']}"
    record = couch.get(path)
    generation = int(record["_rev"].split("-")[0])
    revoked = {**record, "status": "revoked", "_rev": f"{generation - 1}-{'0' * 32}"}
    revoked = Seal(settings.record_key).signed(revoked)  # sealed as the other node wrote it
    revoked["_rev"] = f"{generation}-{'0' * 32}"  # a sibling that loses to the record
    body = {"docs": [revoked], "new_edits": False}
    assert couch.request("POST", f"{settings.state_db}/_bulk_docs", json=body).ok
    assert couch.get(path, conflicts="true")["_conflicts"] == [revoked["_rev"]]
    assert client.get(f"/v1/shares/{share['id']}").get_json()["status"] == "active"

    report = reconcile(client)

    settled = [f for f in report["repaired"] if f["kind"] == "state conflict"]
    assert [f["action"] for f in settled] == [
        "a stop wins over a change: wrote the stop onto the winning revision"
    ], report
    assert client.get(f"/v1/shares/{share['id']}").get_json()["status"] == "revoked"
    assert "_conflicts" not in couch.get(path, conflicts="true")
    user = f"org.couchdb.user:sharing-broker-{share['id']}"
    assert couch.request("GET", f"_users/{user}").status_code == 404
    labelled = {"sharing_broker.share_id": share["id"]}
    found = couch.request("POST", "_replicator/_find", json={"selector": labelled}).json()
    assert found["docs"] == []
    assert reconcile(client)["repaired"] == []


def test_a_change_on_a_losing_branch_loses_to_a_stop(client, couch, settings, registered):
    """The other way round: the revoke is CouchDB's winner, and it stays."""
    share = create_share(client, **RW)
    assert client.delete(f"/v1/shares/{share['id']}").status_code == 200
    path = f"{settings.state_db}/share:{share['id']}"
    record = couch.get(path)
    generation = int(record["_rev"].split("-")[0])
    active = {**record, "status": "active", "_rev": f"{generation - 1}-{'0' * 32}"}
    active = Seal(settings.record_key).signed(active)
    active["_rev"] = f"{generation}-{'0' * 32}"
    body = {"docs": [active], "new_edits": False}
    assert couch.request("POST", f"{settings.state_db}/_bulk_docs", json=body).ok

    report = reconcile(client)

    settled = [f for f in report["repaired"] if f["kind"] == "state conflict"]
    assert [f["action"] for f in settled] == ["kept the winning revision, deleted the others"]
    assert couch.get(path, conflicts="true") == record


def test_a_lease_both_takers_were_given_settles_on_one_holder(couch, settings, client):
    """Two holders, each on a branch of the lease doc: at their next takes one holds it,
    the one CouchDB shows, and the other branch is gone."""
    admin = CouchClient(couch.url, *couch.admin)
    leases = [Lease(admin, settings.state_db, "test-lease", 30) for _ in range(2)]
    assert leases[0].take()
    first = couch.get(f"{settings.state_db}/test-lease")
    other = {**first, "holder": leases[1].holder, "_rev": f"1-{'f' * 32}"}
    body = {"docs": [other], "new_edits": False}  # the second taker, told yes by its node
    assert couch.request("POST", f"{settings.state_db}/_bulk_docs", json=body).ok

    taken = [lease.take() for lease in reversed(leases)]  # the loser first, then the winner

    assert taken == [True, False]  # the `f` revision wins: the second taker's
    assert "_conflicts" not in couch.get(f"{settings.state_db}/test-lease", conflicts="true")
    assert [lease.take() for lease in leases] == [False, True]


def test_a_key_both_replicas_claimed_keeps_one_answer(app, couch, settings):
    """Two replicas each told they claimed one Idempotency-Key: both run the request, the
    first answer kept is the key's, the second finds it and keeps it, and one branch is left."""
    store = app.extensions["sharing_broker"].store
    assert store.claim_key("idempotency:test", "same-request") is None
    claimed = couch.get(f"{settings.state_db}/idempotency:test")
    other = {**claimed, "_rev": f"1-{'f' * 32}"}  # the other replica's claim, told yes too
    body = {"docs": [other], "new_edits": False}
    assert couch.request("POST", f"{settings.state_db}/_bulk_docs", json=body).ok
    first, second = ({"status": 201, "body": f"answer {n}"} for n in (1, 2))

    store.finish_key("idempotency:test", first)
    store.finish_key("idempotency:test", second)

    kept = couch.get(f"{settings.state_db}/idempotency:test", conflicts="true")
    assert (kept["state"], kept["response"]) == ("done", first)
    assert "_conflicts" not in kept


def test_a_followers_pass_longer_than_its_lease_keeps_it(couch, settings, client):
    """A first pass over thousands of databases outlasts the lease: it is renewed while
    the pass goes on, so no other replica starts the same work beside it."""
    admin = CouchClient(couch.url, *couch.admin)
    holder, other = (Lease(admin, settings.state_db, "test-followers", 1.5) for _ in range(2))
    taken_meanwhile = []

    class Slow:
        def run(self, changed):
            time.sleep(3)  # twice the lease
            taken_meanwhile.append(other.take())

    one_pass([Slow()], holder, Updates(set()))

    assert taken_meanwhile == [False]
    assert holder.take() is True
