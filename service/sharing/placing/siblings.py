"""The broker's own docs keep one branch.

On a cluster, a write can land beside a revision that a copy has not seen yet, rather than
on top of it: on a copy back from a node's outage, for one. The doc then has sibling
revisions, and CouchDB shows the one its rule picks, whoever wrote last. A `_users` doc
with siblings logs nobody in; a replicator doc's may hold an older scope. So the broker
reads its own docs with their conflicts, and deletes the losing branches before it writes.
"""

from service.couch import CouchClient


def read_alone(couch: CouchClient, db: str, doc_id: str) -> dict:
    """The doc as CouchDB shows it, its other branches deleted; NotFound if there is none."""
    doc = couch.get(db, doc_id, params={"conflicts": "true"})
    losers = doc.pop("_conflicts", [])
    if losers:
        tombstones = [{"_id": doc_id, "_rev": rev, "_deleted": True} for rev in losers]
        couch.post(db, "_bulk_docs", json={"docs": tombstones})
    return doc
