"""Helpers for tests that look into the users' databases and `_replicator`."""

from service.couch import CouchClient
from tests.pouchdb.demo import ALICE, BOB


def replicator_docs(couch, share_id: str) -> dict[str, dict]:
    """The share's docs in `_replicator`, without the fields CouchDB adds."""
    docs = couch.all_docs("_replicator")
    return {
        doc_id: {k: v for k, v in doc.items() if k != "_rev"}
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
        return [c for c in self.calls if c[0] in ("PUT", "DELETE") or c[1].endswith("_purge")]


def create_share(client, **fields) -> dict:
    """Create a share from Alice to Bob, read-only on collection 1 unless told otherwise."""
    body = {"owner": ALICE, "recipient": BOB, "access": "read", "collections": ["c0ll-uuid-1"]}
    response = client.post("/v1/shares", json={**body, **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()
