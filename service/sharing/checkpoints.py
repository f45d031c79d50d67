"""Where a follower of `_changes` feeds got to: one doc of sequences in the state database."""

from contextlib import suppress

from service.couch import CouchClient, DocumentConflict, NotFound


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
