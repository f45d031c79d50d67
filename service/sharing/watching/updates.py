"""Which databases changed between two passes, from each server's `_db_updates` feed.

One request a server a pass, whatever the number of databases, so the followers read the
`_changes` of only the databases that moved. A server without `_db_updates`
(pouchdb-server), one that did not answer, or the very first pass, answers "unknown", and
the followers read every feed.

How far the passes have dealt with each feed (`settled`) is saved in the state database,
at most every `Checkpoints.every`, so a restarted process (or a replica taking over the lease)
reads on from there rather than from nothing: a rolling deploy does not make every share's
replication run again in on-change mode, and a run still due when a process stops is due
again in the next. Saving less often only shows some changes twice.

A pass may wait for the next change on `default` (a long poll), so that it follows a write
as soon as CouchDB reports it rather than at the next tick; the other servers are read as
they stand.
"""

import logging

from service.couch import CouchClient, CouchError, CouchUnavailable
from service.sharing.core.model import place
from service.sharing.core.sites import Sites
from service.sharing.watching.checkpoints import Checkpoints

log = logging.getLogger(__name__)
DB_UPDATES_CHECKPOINT_ID = "db-updates-checkpoints"


class DatabaseUpdates:
    """How far each server's `_db_updates` has been read, kept in `checkpoints`."""

    def __init__(self, sites: Sites, checkpoints: Checkpoints):
        self.sites = sites
        self.checkpoints = checkpoints
        self._since: dict[str, object] | None = None

    def changed(self, wait: float = 0.0) -> set[str] | None:
        """The places (see `model.place`) of the databases updated since the last call;
        `None` when unknown. Waits up to `wait` seconds for one on `default` when there is
        none yet."""
        if self._since is None:
            try:
                self._since = self.checkpoints.load()
            except (CouchError, CouchUnavailable) as exc:
                log.warning("_db_updates checkpoints not read: %s", exc)
                return None
        found: set[str] | None = set()
        for site in self.sites:
            names = self._changed_on(
                site.name, site.couch, wait if site is self.sites.default else 0
            )
            if names is None or found is None:
                found = None
            else:
                found |= {place(site.name, name) for name in names}
        return found

    def settled(self) -> None:
        """The passes have dealt with every change returned so far, and have nothing left
        to do for them: save where the feeds stand, now and then (`Checkpoints.every`)."""
        if self._since is not None:
            self.checkpoints.save_when_due(dict(self._since))

    def _changed_on(self, server: str, couch: CouchClient, wait: float) -> set[str] | None:
        try:
            if server not in self._since:
                self._since[server] = _read(couch, "now")["last_seq"]
                return None
            page = _read(couch, self._since[server], wait)
        except (CouchError, CouchUnavailable):
            self._since.pop(server, None)
            return None
        self._since[server] = page["last_seq"]
        return {row["db_name"] for row in page["results"] if row.get("type") != "deleted"}


def _read(couch: CouchClient, since: object, wait: float = 0.0) -> dict:
    if not wait:
        return couch.get("_db_updates", params={"feed": "normal", "since": since})
    params = {"feed": "longpoll", "since": since, "timeout": int(wait * 1000)}
    return couch.get("_db_updates", params=params)
