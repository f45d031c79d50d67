"""Which databases changed between two passes, from each server's `_db_updates` feed.

One request a server a pass, whatever the number of databases, so the followers read the
`_changes` of only the databases that moved. A server without `_db_updates`
(pouchdb-server), one that did not answer, or the first pass of a process, answers
"unknown", and the followers read every feed.
"""

from service.couch import CouchClient, CouchError, CouchUnavailable
from service.sharing.core.model import place
from service.sharing.core.sites import Sites


class DatabaseUpdates:
    """Remembers, in this process, how far it has read each server's `_db_updates`."""

    def __init__(self, sites: Sites):
        self.sites = sites
        self._since: dict[str, object] = {}

    def changed(self) -> set[str] | None:
        """The places (see `model.place`) of the databases updated since the last call;
        `None` when unknown."""
        found: set[str] | None = set()
        for site in self.sites:
            names = self._changed_on(site.name, site.couch)
            if names is None or found is None:
                found = None
            else:
                found |= {place(site.name, name) for name in names}
        return found

    def _changed_on(self, server: str, couch: CouchClient) -> set[str] | None:
        try:
            if server not in self._since:
                self._since[server] = _read(couch, "now")["last_seq"]
                return None
            page = _read(couch, self._since[server])
        except (CouchError, CouchUnavailable):
            self._since.pop(server, None)
            return None
        self._since[server] = page["last_seq"]
        return {row["db_name"] for row in page["results"] if row.get("type") != "deleted"}


def _read(couch: CouchClient, since: object) -> dict:
    return couch.get("_db_updates", params={"feed": "normal", "since": since})
