"""Helpers for tests that look into the users' databases and `_replicator`."""

import time
from functools import partial
from urllib.parse import quote

import requests

from service.couch import CouchClient
from service.sharing.crossing.selectors import ENDED_MARK
from tests.servers.demo import ALICE, BOB


def replicator_docs(couch, share_id: str) -> dict[str, dict]:
    """The share's docs in `_replicator`, without the fields CouchDB adds."""
    docs = couch.all_docs("_replicator")
    return {
        doc_id: {k: v for k, v in doc.items() if k not in ("_rev", "owner")}
        for doc_id, doc in docs.items()
        if doc_id.startswith(f"sharing-broker-{share_id}-")
    }


GUARD_ID = "_design/sharing-broker-guard"


def revisions(couch, db: str) -> dict[str, str]:
    """Every live doc of `db` but the broker's guard, with its revision: the user's data."""
    docs = couch.all_docs(db).items()
    return {doc_id: doc["_rev"] for doc_id, doc in docs if doc_id != GUARD_ID}


def find_ids(couch, db: str, selector: dict) -> set[str]:
    response = couch.request("POST", f"{db}/_find", json={"selector": selector, "limit": 10_000})
    response.raise_for_status()
    return {doc["_id"] for doc in response.json()["docs"]}


def replicate(couch, source: str, target: str, selector: dict) -> set[str]:
    """Do what CouchDB's replicator would: copy the matching docs, revisions kept."""
    ids = find_ids(couch, source, selector)
    docs = [couch.get(f"{source}/{i}", attachments="true", revs="true") for i in sorted(ids)]
    response = couch.request(
        "POST", f"{target}/_bulk_docs", json={"docs": docs, "new_edits": False}
    )
    response.raise_for_status()
    return ids


class CallLog:
    """Records every request the broker sends to CouchDB, in order."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, str]] = []
        original = CouchClient.request

        def request(client, method, segments, **kwargs):
            segments = tuple(segments)
            self.calls.append((method, "/".join(segments)))
            return original(client, method, segments, **kwargs)

        monkeypatch.setattr(CouchClient, "request", request)

    def writes(self) -> list[tuple[str, str]]:
        return [
            c
            for c in self.calls
            if c[0] in ("PUT", "DELETE") or c[1].endswith(("_purge", "_bulk_docs"))
        ]


def create_share(client, **fields) -> dict:
    """Create a share from Alice to Bob, read-only on collection 1 unless told otherwise."""
    body = {"owner": ALICE, "recipient": BOB, "access": "read", "collections": ["c0ll-uuid-1"]}
    response = client.post("/v1/shares", json={**body, **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def remove_broker_footprint(state_db: str, *servers) -> None:
    """Remove what a test's broker left on these servers: its replicator docs, then, once
    CouchDB has stopped their jobs, its share users and its state database. So replications
    from earlier tests neither pile up nor end against users and databases deleted under
    them: such a job retries its last checkpoint, and CouchDB's scheduler, with every
    replicator doc behind it, waits for the job up to 5 s."""
    removed = {server: _delete_labelled(server, "_replicator", state_db) for server in servers}
    for server, doc_ids in removed.items():
        if server.replicates:
            check = partial(stopped, server, doc_ids)
            wait_for(check, "the removed replications stopped", couch=server)
    for server in servers:
        _delete_labelled(server, "_users", state_db)
        server.delete(state_db)


def _delete_labelled(couch, db: str, state_db: str) -> list[str]:
    """Delete the docs of `db` labelled as the broker's with this state database."""
    label = {"sharing_broker.broker": state_db}
    response = couch.request("POST", f"{db}/_find", json={"selector": label, "limit": 10_000})
    docs = response.json().get("docs", []) if response.ok else []
    for doc in docs:
        couch.delete_doc(db, doc["_id"])  # reads again if CouchDB re-hashed a user
    return [doc["_id"] for doc in docs]


def stopped(couch, removed: list[str]) -> bool:
    """Whether none of the removed replicator docs has a job left in `_scheduler/jobs`,
    where a job stays until CouchDB has stopped it. On a cluster, the end of a one-shot run
    written on one copy can win over a deletion on another: delete such a doc again."""
    for doc_id in {doc[0] for doc in replication_jobs(couch)} & set(removed):
        couch.delete_doc("_replicator", doc_id)
    return not running_doc_ids(couch) & set(removed)


def running_doc_ids(couch) -> set[str]:
    """The replicator doc of each job CouchDB's scheduler holds, running or pending."""
    jobs = couch.get("_scheduler/jobs", limit="10000").get("jobs", [])
    return {job.get("doc_id") for job in jobs}


def wait_for(check, what: str, seconds: float = 30.0, every: float = 0.2, couch=None):
    """Poll `check()` until it gives something truthy, and return that; replication is
    asynchronous. Fails naming `what` once `seconds` have passed, with the state of the
    server's replicator when given it."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            found = f"; {replication_state(couch)}" if couch and couch.replicates else ""
            raise AssertionError(f"not within {seconds:.0f} s: {what}{found}")
        time.sleep(every)


def replication_state(couch) -> str:
    """What a failed wait reports: each replicator doc's state, the docs CouchDB's scheduler
    holds jobs for, whether the replicator's own processes have work queued up, and what a
    server the tests started logged about replication last."""
    system = couch.request("GET", "_node/_local/_system")
    queues = system.json().get("message_queues", {}) if system.ok else {}
    busy = {name: n for name, n in queues.items() if "replicat" in name and n}
    found = f"docs: {replication_jobs(couch)}; jobs: {running_doc_ids(couch)}; queued: {busy}"
    log = couch.replicator_log()
    return f"{found}\nCouchDB's log about replication, last lines:\n{log}" if log else found


def replication_jobs(couch) -> list[tuple]:
    """Each replicator doc's state in `_scheduler/docs`, with its last error."""
    docs = couch.get("_scheduler/docs/_replicator").get("docs", [])
    return [(d["doc_id"], d["state"], (d.get("info") or {}).get("error")) for d in docs]


def arrived(couch, db: str, doc_ids: set[str]) -> bool:
    """Whether every one of these docs is in `db` now."""
    return doc_ids <= set(couch.all_docs(db))


def wait_for_docs(couch, db: str, doc_ids: set[str], what: str) -> None:
    """Wait, by bounded polling, until replication has brought these docs into `db`."""
    wait_for(lambda: arrived(couch, db, doc_ids), what, couch=couch)


def withdrawn_by(couch, db: str, doc_id: str) -> str | None:
    """The share whose end deleted the doc: the `sharing_broker_ended` of its tombstone,
    if the doc is deleted and has no live leaf."""
    response = couch.request("GET", f"{db}/{quote(doc_id, safe='')}", params={"open_revs": "all"})
    if not response.ok:
        return None
    leaves = [row["ok"] for row in response.json() if "ok" in row]
    if not leaves or any(not leaf.get("_deleted") for leaf in leaves):
        return None
    return next((leaf[ENDED_MARK] for leaf in leaves if ENDED_MARK in leaf), None)


def doc_state(couch, db: str, doc_id: str) -> str:
    """`live`, `deleted` (a tombstone), or `missing` (never there, or purged)."""
    response = couch.request("GET", f"{db}/{quote(doc_id, safe='')}")
    if response.ok:
        return "live"
    return "deleted" if response.json().get("reason") == "deleted" else "missing"


def scheduler_doc(couch, doc_id: str) -> dict:
    """What CouchDB's `_scheduler/docs` says of one replicator doc; {} when it has no job."""
    response = couch.request("GET", f"_scheduler/docs/_replicator/{doc_id}")
    return response.json() if response.ok else {}


def roles_in_force(couch, auth: tuple[str, str]) -> list[str]:
    """The roles a user's logins carry now: CouchDB caches users, so a change of a user's
    roles is in force a moment after its write."""
    session = requests.get(f"{couch.url}/_session", auth=auth, timeout=10).json()
    return session["userCtx"]["roles"]
