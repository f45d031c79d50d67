"""Following `_changes` feeds: reading one page by page, and where each follower got to."""

import logging
import time
from collections.abc import Iterator

from service.couch import CouchClient, CouchError, CouchUnavailable, DocumentConflict, NotFound

log = logging.getLogger(__name__)
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
    """Key (a database, a share) -> the last sequence a follower has dealt with.

    Kept in memory from pass to pass: read from CouchDB on the first pass, and again after
    a save finds that another process (a replica that held the followers lease meanwhile)
    saved its own. Reading from an older sequence only deals with some changes twice.
    """

    def __init__(self, couch: CouchClient, db: str, doc_id: str, every: float = 30.0):
        """`every`: the fewest seconds between two saves by `save_when_due`."""
        self.couch = couch
        self.db = db
        self.doc_id = doc_id
        self.every = every
        self._doc: dict | None = None
        self._saved_at = float("-inf")

    def load(self) -> dict[str, object]:
        if self._doc is None:
            try:
                self._doc = self.couch.get(self.db, self.doc_id)
            except NotFound:
                self._doc = {"_id": self.doc_id, "type": "checkpoints"}
        return dict(self._doc.get("since", {}))

    def save(self, since: dict[str, object]) -> None:
        """Store `since` if it moved. On a conflict another process saved its own first:
        this pass's changes are dealt with again, from what it saved."""
        if self._holds(since):
            return
        doc = {**(self._doc or {"_id": self.doc_id, "type": "checkpoints"}), "since": since}
        try:
            self._doc = {**doc, "_rev": self.couch.put(self.db, self.doc_id, json=doc)["rev"]}
        except DocumentConflict:
            self._doc = None

    def save_when_due(self, since: dict[str, object]) -> None:
        """`save`, unless this process saved less than `every` seconds ago: for positions
        that move with every pass. One CouchDB refuses is named in the log and left to the
        next."""
        if self._holds(since) or time.monotonic() - self._saved_at < self.every:
            return
        self._saved_at = time.monotonic()
        try:
            self.save(since)
        except (CouchError, CouchUnavailable) as exc:
            log.warning("%s not saved: %s", self.doc_id, exc)

    def _holds(self, since: dict[str, object]) -> bool:
        """Whether `since` is what was read or saved last: nothing to write."""
        return self._doc is not None and since == self._doc.get("since")
