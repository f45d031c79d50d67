"""Which databases changed between two passes, from CouchDB's `_db_updates` feed.

One request a pass, whatever the number of databases, so the followers read the `_changes`
of only the databases that moved. A server without `_db_updates` (pouchdb-server), or the
first pass of a process, answers "unknown", and the followers read every feed.
"""

from service.couch import CouchClient, CouchError, CouchUnavailable


class DatabaseUpdates:
    """Remembers, in this process, how far it has read `_db_updates`."""

    def __init__(self, couch: CouchClient):
        self.couch = couch
        self._since: object = None

    def changed(self) -> set[str] | None:
        """Names of the databases updated since the last call; `None` when unknown."""
        try:
            if self._since is None:
                self._since = self._read("now")["last_seq"]
                return None
            page = self._read(self._since)
        except (CouchError, CouchUnavailable):
            self._since = None
            return None
        self._since = page["last_seq"]
        return {row["db_name"] for row in page["results"] if row.get("type") != "deleted"}

    def _read(self, since: object) -> dict:
        return self.couch.get("_db_updates", params={"feed": "normal", "since": since})
