"""Upgrade in place: a deployment of the earlier layout moves to roles and the fixed guard
without stopping replication.

The earlier layout named each share user in its databases' `_security` and kept every
share user's scope in one guard per database (`data/guard_before_roles.js`, that guard's
source as it rendered, with its scopes and rules left as placeholders). Here a share made
now is put back into that layout by hand, as the earlier version left it; then reconcile,
or a new share on the same database, moves it on while docs keep crossing both ways.
"""

import itertools
import json
import threading
from pathlib import Path

import pytest

from service.sharing.placing.guard import GUARD_ID, guard_doc, member_role, scopes_in_roles
from tests.consistency import members, scopes
from tests.helpers import (
    create_share,
    replicator_docs,
    roles_in_force,
    scheduler_doc,
    wait_for,
    wait_for_docs,
)
from tests.test_replication import share_with_carol

pytestmark = pytest.mark.couchdb  # continuous jobs on CouchDB's replicator

EARLIER_GUARD = (Path(__file__).parent / "data" / "guard_before_roles.js").read_text()
NO_RULES = "function (doc) { return true; }"
RW = {"access": "read-write", "collections": ["c0ll-uuid-1"]}


def item(doc_id: str) -> dict:
    return {"_id": doc_id, "type": "item", "data": {"collection_id": "c0ll-uuid-1"}}


def earlier_guard(scoped: dict[str, dict], broker: str) -> dict:
    """The earlier version's guard doc for these share users (name -> scope, no rules)."""
    rules = {name: {"collection": NO_RULES, "item": NO_RULES} for name in scoped}
    source = EARLIER_GUARD.replace("@@SCOPES@@", json.dumps(scoped, sort_keys=True)).replace(
        "@@RULES@@",
        "{"
        + ", ".join(
            f"{json.dumps(n)}: {{{', '.join(f'{json.dumps(k)}: {f}' for k, f in r.items())}}}"
            for n, r in rules.items()
        )
        + "}",
    )
    return {
        "_id": GUARD_ID,
        "language": "javascript",
        "validate_doc_update": source.strip(),
        "sharing_broker": {"broker": broker, "scopes": scoped},
    }


def put_back_in_the_earlier_layout(couch, share_ids: list[str], dbs: list[str], broker: str):
    """Each share user named in `_security` with no roles, every scope in the one guard;
    in an order that never takes the users' access away, as their replications run."""
    scoped = {db: {} for db in dbs}
    paths = [f"_users/org.couchdb.user:sharing-broker-{share_id}" for share_id in share_ids]
    for path in paths:
        user = couch.get(path)
        for db, scope in scopes_in_roles(user["roles"]).items():
            scoped[db][user["name"]] = scope
    for db in dbs:
        security = couch.get(f"{db}/_security")
        security["members"]["names"] += sorted(scoped[db])
        couch.put(f"{db}/_security", security)
        guard = {**earlier_guard(scoped[db], broker), "_rev": couch.get(f"{db}/{GUARD_ID}")["_rev"]}
        couch.put(f"{db}/{GUARD_ID}", guard)
    for path in paths:
        couch.put(path, {**couch.get(path), "roles": []})
    for db in dbs:
        security = couch.get(f"{db}/_security")
        listed = security["members"]
        listed["roles"] = [r for r in listed["roles"] if r != member_role(db)]
        couch.put(f"{db}/_security", security)


def in_the_new_layout(couch, db: str, broker: str) -> bool:
    listed = couch.get(f"{db}/_security")["members"]
    guard = couch.get(f"{db}/{GUARD_ID}")
    wanted = guard_doc(db, broker)
    return (
        not [n for n in listed["names"] if n.startswith("sharing-broker-")]
        and member_role(db) in listed["roles"]
        and all(guard.get(k) == v for k, v in wanted.items())
    )


class Writers:
    """Writes an item into each database every few milliseconds, until stopped."""

    def __init__(self, couch, dbs: dict[str, str]):
        self.couch, self.dbs = couch, dbs
        self.written = {person: set() for person in dbs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        for n in itertools.count():
            for person, db in self.dbs.items():
                doc_id = f"item-during-{person}-{n}"
                self.couch.put(f"{db}/{doc_id}", item(doc_id))
                self.written[person].add(doc_id)
            if self._stop.wait(0.05):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join()


def assert_crossed_without_failures(couch, share_id: str, writers: Writers, dbs) -> None:
    wait_for_docs(couch, dbs["bob"], writers.written["alice"], "Alice's items at Bob's")
    wait_for_docs(couch, dbs["alice"], writers.written["bob"], "Bob's items at Alice's")
    for doc_id in replicator_docs(couch, share_id):
        info = scheduler_doc(couch, doc_id).get("info") or {}
        assert info.get("doc_write_failures", 0) == 0, (doc_id, info)


def settled(client, couch, share_id: str) -> dict:
    """Reconcile once the share user's logins carry its roles; return the report."""
    user = couch.get(f"_users/org.couchdb.user:sharing-broker-{share_id}")
    basic = next(iter(replicator_docs(couch, share_id).values()))["source"]["auth"]["basic"]
    auth = (basic["username"], basic["password"])
    wait_for(lambda: roles_in_force(couch, auth) == user["roles"], "the roles in force")
    report = client.post("/v1/reconcile").get_json()
    assert report["errors"] == []
    return report


def test_reconcile_moves_a_share_to_roles_and_the_fixed_guard_as_docs_cross(
    client, couch, registered, dbs, settings
):
    share = create_share(client, **RW)
    broker, name = settings.state_db, f"sharing-broker-{share['id']}"
    put_back_in_the_earlier_layout(couch, [share["id"]], list(dbs.values()), broker)
    assert all(members(couch, db) == {name} and scopes(couch, db) == {} for db in dbs.values())

    with Writers(couch, dbs) as writers:
        wait_for_docs(couch, dbs["bob"], {"item-during-alice-2"}, "the earlier layout running")
        first = client.post("/v1/reconcile").get_json()
        assert first["errors"] == []
        # Roles and the fixed guard now; the earlier scopes and names wait for the roles
        # to be in force, and go with the next reconcile.
        assert all(set(scopes(couch, db)) == {name} for db in dbs.values())
        settled(client, couch, share["id"])

    assert all(in_the_new_layout(couch, db, broker) for db in dbs.values())
    assert all(members(couch, db) == {name} for db in dbs.values())
    assert_crossed_without_failures(couch, share["id"], writers, dbs)
    again = client.post("/v1/reconcile").get_json()
    assert [r for r in again["repaired"] if r["kind"] != "expired idempotency keys"] == []


def test_a_new_share_on_a_database_of_the_earlier_layout_moves_its_shares_first(
    client, couch, registered, dbs, people, settings
):
    """Making Alice's database ready for a new share replaces its earlier guard; Bob's share
    there gets its scope as a role first, and keeps its earlier one in the new guard until
    that role is in force, so its writes back are never refused."""
    dbs = {person: dbs[person] for person in ("alice", "bob")}  # Carol's is the new share's
    share = create_share(client, **RW)
    broker, name = settings.state_db, f"sharing-broker-{share['id']}"
    put_back_in_the_earlier_layout(couch, [share["id"]], list(dbs.values()), broker)

    with Writers(couch, dbs) as writers:
        wait_for_docs(couch, dbs["alice"], {"item-during-bob-2"}, "the earlier layout running")
        carol = share_with_carol(client, people)
        guard = couch.get(f"{dbs['alice']}/{GUARD_ID}")  # the fixed one, keeping Bob's
        kept = guard["sharing_broker"]["scopes"]
        assert set(kept) == {name}
        assert (
            guard["validate_doc_update"]
            == guard_doc(dbs["alice"], broker, kept)["validate_doc_update"]
        )
        user = couch.get(f"_users/org.couchdb.user:{name}")
        assert set(scopes_in_roles(user["roles"])) == {dbs["alice"]}  # Bob's db: not yet
        settled(client, couch, share["id"])

    assert all(in_the_new_layout(couch, db, broker) for db in dbs.values())
    assert members(couch, dbs["alice"]) == {name, f"sharing-broker-{carol['id']}"}
    assert_crossed_without_failures(couch, share["id"], writers, dbs)
