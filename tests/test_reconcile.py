"""Reconcile repairs drift made by hand, and is safe to run twice at once."""

import base64
import dataclasses
import logging
import threading
import time

import pytest
import requests

from service.cli import main
from service.sharing.core.lease import Lease
from service.sharing.core.model import (
    Access,
    Database,
    Operation,
    Selection,
    Share,
    Status,
    now_iso,
)
from service.sharing.core.seal import Seal
from service.sharing.lifecycle import reconcile as reconcile_module
from tests.conftest import ADMIN_TOKEN, CAROL
from tests.consistency import DB_SHARING, assert_consistent, broker_parts
from tests.helpers import create_share, replicator_docs, wait_for, withdrawn_by
from tests.servers.demo import ALICE, BOB

RW = {"access": "read-write", "collections": ["c0ll-uuid-1"]}


def reconcile(client) -> dict:
    response = client.post("/v1/reconcile")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def delete(couch, path: str) -> None:
    rev = couch.get(path)["_rev"]
    couch.request("DELETE", path, params={"rev": rev}).raise_for_status()


def test_a_clean_state_needs_nothing(client, couch, settings, registered, dbs):
    create_share(client, **RW)
    report = reconcile(client)
    assert report["repaired"] == [] and report["errors"] == [] and report["skipped"] is None
    assert assert_consistent(couch, settings.state_db, dbs)


@pytest.mark.parametrize("part", ["owner-to-recipient", "recipient-to-owner", "db_sharing"])
def test_a_part_deleted_by_hand_is_restored(client, couch, settings, registered, dbs, part):
    share = create_share(client, **RW)
    path = (
        f"{dbs['alice']}/{DB_SHARING}"
        if part == "db_sharing"
        else f"_replicator/sharing-broker-{share['id']}-{part}"
    )
    delete(couch, path)
    report = reconcile(client)
    assert {r["share_id"] for r in report["repaired"]} == {share["id"]}
    assert assert_consistent(couch, settings.state_db, dbs).id == share["id"]


@pytest.mark.couchdb  # CouchDB logs nobody in with a `_users` doc that has siblings
@pytest.mark.parametrize("doc", ["user", "replicator doc"])
def test_a_sibling_beside_a_broker_doc_is_deleted(client, couch, settings, registered, dbs, doc):
    """On a cluster a write can land beside a revision a copy has not seen. Here CouchDB is
    handed a sibling that wins: an older password, or the share's scope widened."""
    share = create_share(client, **RW)
    name = f"sharing-broker-{share['id']}"
    path = f"_users/org.couchdb.user:{name}" if doc == "user" else f"_replicator/{name}"
    if doc == "replicator doc":
        path += "-owner-to-recipient"
    current = couch.get(path)
    sibling = {**current, "_rev": "9-" + "f" * 32}
    if doc == "user":
        sibling.update(salt="0" * 32, derived_key="1" * 40)
    else:
        sibling["selector"] = {"_id": {"$gt": None}}
    body = {"docs": [sibling], "new_edits": False}
    assert couch.request("POST", f"{path.split('/')[0]}/_bulk_docs", json=body).ok
    assert couch.get(path, conflicts="true")["_conflicts"]  # its own revision, now the loser

    report = reconcile(client)

    assert report["errors"] == [] and report["repaired"], report
    assert "_conflicts" not in couch.get(path, conflicts="true")
    basic = couch.get(f"_replicator/{name}-owner-to-recipient")["source"]["auth"]["basic"]
    login = (basic["username"], basic["password"])
    # CouchDB's cache of `_users` takes a few seconds to drop the sibling it held.
    session = f"{couch.url}/_session"
    wait_for(lambda: requests.get(session, auth=login, timeout=10).ok, "a login", every=1)
    assert reconcile(client)["repaired"] == []  # its parts are as wanted
    assert assert_consistent(couch, settings.state_db, dbs).id == share["id"]


def test_a_failed_replication_is_restarted(client, couch, settings, registered, dbs):
    share = create_share(client, **RW)
    path = f"_replicator/sharing-broker-{share['id']}-owner-to-recipient"
    doc = couch.get(path)
    couch.put(
        path, {**doc, "_replication_state": "failed", "_replication_state_reason": "unauthorized"}
    )
    report = reconcile(client)
    assert report["repaired"][0]["part"] == "replication:owner-to-recipient"
    assert "_replication_state" not in couch.get(path)


def test_a_stray_broker_replicator_doc_is_removed_and_others_are_not(
    client, couch, settings, registered, dbs
):
    stray = {
        "source": {"url": f"http://x/{dbs['alice']}"},
        "target": {"url": f"http://x/{dbs['bob']}"},
        "sharing_broker": {
            "broker": settings.state_db,
            "share_id": "no-such-share",
            "direction": "owner-to-recipient",
        },
    }
    couch.put("_replicator/sharing-broker-stray-owner-to-recipient", stray)
    someone_elses = {**stray, "sharing_broker": None}
    theirs = f"someone-elses-replication-{settings.state_db}"
    couch.put(f"_replicator/{theirs}", someone_elses)
    try:
        report = reconcile(client)
        replicator = couch.all_docs("_replicator")
    finally:
        couch.delete_doc("_replicator", theirs)
    assert {
        "kind": "orphan replicator doc",
        "doc_id": "sharing-broker-stray-owner-to-recipient",
        "action": "removed it",
    } in report["repaired"]
    assert "sharing-broker-stray-owner-to-recipient" not in replicator
    assert theirs in replicator


def test_a_leftover_db_sharing_is_removed_but_a_hand_made_one_stays(
    client, couch, settings, registered, dbs
):
    share = create_share(client, **RW)
    couch.put(
        f"{dbs['alice']}/db_sharing-{ALICE}--someone",
        {"type": "db_sharing", "data": {"permissions": ["read", "write"]}},
    )
    state_path = f"{settings.state_db}/share:{share['id']}"
    record = couch.get(state_path)
    revoked = Seal(settings.record_key).signed({**record, "status": "revoked"})
    couch.put(state_path, revoked)  # the broker's record says revoked
    reconcile(client)
    assert broker_parts(couch, dbs) == {
        "replications": set(),
        "db_sharing": {f"db_sharing-{ALICE}--someone"},
    }


def test_two_reconcilers_at_once_do_no_harm(app, client, couch, settings, registered, dbs):
    share = create_share(client, **RW)
    delete(couch, f"_replicator/sharing-broker-{share['id']}-owner-to-recipient")
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    reports = []

    def run():
        reports.append(app.test_client().post("/v1/reconcile", headers=headers).get_json())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert any(r["repaired"] for r in reports)
    assert all(r["errors"] == [] for r in reports)
    assert assert_consistent(couch, settings.state_db, dbs).id == share["id"]


def test_reconcile_is_for_admins_only(app, people):
    name, password = people["alice"]
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    response = app.test_client().post("/v1/reconcile", headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 403


def test_the_cli_runs_reconcile(live_broker, dbs, capsys):
    assert main(["databases", "register", dbs["alice"]]) == 0
    capsys.readouterr()
    assert main(["reconcile", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"repaired": []' in out


def test_a_copy_of_db_sharing_left_with_the_recipient_is_deleted(
    client, couch, settings, registered, dbs
):
    share = create_share(client, access="read", collections=["c0ll-uuid-1"])
    label = {"broker": settings.state_db, "share_id": share["id"]}
    left = {
        "type": "db_sharing",
        "data": {"permissions": ["read", "write"]},
        "sharing_broker": label,
    }
    couch.put(f"{dbs['bob']}/{DB_SHARING}", left)  # from when the share was read-write

    report = reconcile(client)

    assert report["errors"] == []
    finding = {"kind": "orphan copy of a db_sharing doc", "database": dbs["bob"]}
    assert {**finding, "doc_id": DB_SHARING, "action": "deleted it"} in report["repaired"]
    assert withdrawn_by(couch, dbs["bob"], DB_SHARING) == share["id"]


def test_a_share_record_the_broker_did_not_write_is_never_provisioned(
    client, couch, settings, registered, dbs
):
    """As anyone could write one where the state database is left open."""
    forged = Share.new(ALICE, BOB, Access.READ_WRITE, Selection(None))  # all of Alice's, to Bob
    forged.status = Status.ACTIVE
    couch.put(f"{settings.state_db}/{Share.doc_id(forged.id)}", forged.to_doc())

    report = reconcile(client)

    refused = {"kind": "unsealed record", "record": Share.doc_id(forged.id)}
    assert {**refused, "error": "not written by this broker: refused"} in report["errors"]
    assert client.get(f"/v1/shares/{forged.id}").status_code == 404
    assert (
        couch.all_docs("_replicator")
        .keys()
        .isdisjoint({f"sharing-broker-{forged.id}-owner-to-recipient"})
    )
    for db in dbs.values():
        names = couch.get(f"{db}/_security")["members"]["names"]
        assert f"sharing-broker-{forged.id}" not in names


def test_a_registration_the_broker_did_not_write_is_refused_and_replaced(
    client, couch, settings, dbs
):
    squatted = Database(ALICE, dbs["bob"], "default", now_iso())  # Alice's UUID, Bob's db
    couch.put(f"{settings.state_db}/{Database.doc_id(ALICE)}", squatted.to_doc())
    assert client.get(f"/v1/databases/{ALICE}").status_code == 404

    response = client.post("/v1/databases", json={"database": dbs["alice"]})

    assert response.status_code == 201
    assert client.get(f"/v1/databases/{ALICE}").get_json()["database"] == dbs["alice"]


def test_an_operation_under_way_in_another_request_is_left_to_it(app, client, couch, registered):
    """Another replica's PATCH has just written its plan into the record: reconcile must
    not run it beside that request, nor repair the share back to its old settings."""
    share = create_share(client, access="read-write")
    broker = app.extensions["sharing_broker"]
    record = broker.store.get_shares({share["id"]})[share["id"]]
    record.operation = Operation.toward("patch", Access.READ, Selection(["c0ll-uuid-1"], None))
    broker.store.save_share(record)
    before = replicator_docs(couch, share["id"])
    patient = dataclasses.replace(broker, operation_grace_seconds=60).reconciler()

    report = patient.run()

    assert not [f for f in report.found if f.get("share_id") == share["id"]]
    assert replicator_docs(couch, share["id"]) == before  # its way back is still there

    record = broker.store.get_shares({share["id"]})[share["id"]]
    record.operation.started_at = now_iso(-61)  # the request that wrote it is long gone
    broker.store.save_share(record)
    report = patient.run()

    assert {"kind": "unfinished operation", "share_id": share["id"]}.items() <= next(
        f for f in report.found if f.get("share_id") == share["id"]
    ).items()
    assert len(replicator_docs(couch, share["id"])) == 1  # read-only now: no way back


def test_a_long_pass_keeps_its_lease(app, client, couch, registered, people, monkeypatch):
    """A pass that outlasts its lease renews it as it goes, so no second reconciler starts
    beside it. Three shares take 2.5 s of repair each, 7.5 s against the 6 s lease; a
    renewal falls due once less than half of it is left, checked at each share and before
    each later step. (A share's own repair has 3.5 s less its real work before the lease
    would lapse: enough on a busy machine, where 3 s was not.)"""
    monkeypatch.setattr(reconcile_module, "LEASE_SECONDS", 6)
    broker = app.extensions["sharing_broker"]
    assert client.post("/v1/databases", json={"database": people["carol_db"]}).status_code == 201
    create_share(client, access="read-write")
    create_share(client, recipient=CAROL)
    create_share(client, owner=BOB, recipient=CAROL, collections=None)
    slow_repair = broker.shares.repair

    def repair(share):
        time.sleep(2.5)
        return slow_repair(share)

    monkeypatch.setattr(broker.shares, "repair", repair)
    reconciler = broker.reconciler()
    dropping = threading.Event()  # the pass gives the lease up at its end: fair to take then
    give_up = reconciler.lease.drop
    monkeypatch.setattr(reconciler.lease, "drop", lambda: (dropping.set(), give_up()))
    rival = Lease(broker.store.couch, broker.store.db, reconcile_module.LEASE_ID, 6)
    taken = []
    pass_ = threading.Thread(target=lambda: taken.append(reconciler.run()))
    pass_.start()
    lease_doc = lambda: broker.store.get_doc(reconcile_module.LEASE_ID) or {}  # noqa: E731
    while pass_.is_alive() and lease_doc().get("holder") != reconciler.lease.holder:
        time.sleep(0.05)  # the rival starts once the pass holds the lease
    taken_mid_pass = False
    while pass_.is_alive():
        taken_mid_pass |= rival.take() and not dropping.is_set()
        time.sleep(0.2)
    pass_.join()
    assert dropping.is_set()
    assert not taken_mid_pass
    assert taken[0].skipped is None


def test_a_long_pass_says_how_far_it_is(client, registered, monkeypatch, caplog):
    """Thousands of shares take minutes: the pass logs its progress as it goes."""
    monkeypatch.setattr(reconcile_module, "PROGRESS_EVERY", 1)
    create_share(client, **RW)
    with caplog.at_level(logging.INFO, logger=reconcile_module.__name__):
        reconcile(client)
    assert "reconcile: 1 of 1 active shares checked" in caplog.messages
