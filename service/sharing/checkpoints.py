"""Following `_changes` feeds: reading one page by page, and where each follower got to."""

from collections.abc import Iterator
from contextlib import suppress

from service.couch import CouchClient, DocumentConflict, NotFound

CHANGES_PAGE = 1000


def changes_pages(couch: CouchClient, db: str, since: object, **params) -> Iterator[dict]:
    """The `_changes` of `db` after `since`, a page at a time, to the end of the feed."""
    while True:
        page = couch.get(db, "_changes", params={**params, "since": since, "limit": CHANGES_PAGE})
        yield page
        if len(page["results"]) < CHANGES_PAGE:
            return
        since = page["last_seq"]


class Checkpoints:
    """Key (a database, a share) -> the last sequence a follower has dealt with."""

    def __init__(self, couch: CouchClient, db: str, doc_id: str):
        self.couch = couch
        self.db = db
        self.doc_id = doc_id
        self._doc: dict = {}

    def load(self) -> dict[str, object]:
        try:
            self._doc = self.couch.get(self.db, self.doc_id)
        except NotFound:
            self._doc = {"_id": self.doc_id, "type": "checkpoints"}
        return dict(self._doc.get("since", {}))

    def save(self, since: dict[str, object]) -> None:
        """Store `since` if it moved. On a conflict another pass saved its own first, and
        this pass's changes are dealt with again next time."""
        if since == self._doc.get("since"):
            return
        with suppress(DocumentConflict):
            self.couch.put(self.db, self.doc_id, json={**self._doc, "since": since})
