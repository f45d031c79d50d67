"""A lease in the state database: one holder at a time among workers and replicas.

On a cluster, two takers through two nodes may both be told yes. CouchDB then shows every
reader the same holder, and the next take by either deletes the other branches: the taker
they named steps down. So two may hold it at once for at most half a lease (`hold` renews
no sooner), and the work done under a lease must bear being done twice.
"""

import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta

from service.couch import CouchClient, CouchError, CouchUnavailable, DocumentConflict, NotFound

log = logging.getLogger(__name__)


class Lease:
    """Taken for `seconds`; its holder may renew it, anyone may take it once it lapses."""

    def __init__(self, couch: CouchClient, db: str, lease_id: str, seconds: float):
        self.couch = couch
        self.db = db
        self.lease_id = lease_id
        self.seconds = seconds
        self.holder = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self._until: datetime | None = None

    def take(self) -> bool:
        """Take or renew the lease; return whether this holder has it now."""
        now = datetime.now(UTC)
        until = now + timedelta(seconds=self.seconds)
        lease = {"_id": self.lease_id, "type": "lease", "holder": self.holder}
        try:
            current = self.couch.get(self.db, self.lease_id, params={"conflicts": "true"})
        except NotFound:
            current = None
        if current is not None:
            self._settle(current.pop("_conflicts", []))
            if current["holder"] != self.holder and current["until"] > now.isoformat():
                self._until = None
                return False
            lease["_rev"] = current["_rev"]
        try:
            self.couch.put(self.db, self.lease_id, json={**lease, "until": until.isoformat()})
        except DocumentConflict:
            self._until = None
            return False  # another holder took it first
        self._until = until
        return True

    def _settle(self, losing: list[str]) -> None:
        """Delete the lease's losing branches: the holder CouchDB shows is the holder."""
        for rev in losing:
            with suppress(DocumentConflict, NotFound):  # deleted by the other taker
                self.couch.delete(self.db, self.lease_id, params={"rev": rev})

    def hold(self) -> bool:
        """Like `take`, without a round trip while more than half the lease is left."""
        if self._until and self._until - datetime.now(UTC) > timedelta(seconds=self.seconds / 2):
            return True
        return self.take()

    def renew(self) -> bool:
        """Extend the lease if this holder has it; never take it from another. Return
        whether this holder still has it."""
        return self._until is not None and self.take()

    def drop(self) -> None:
        """Give the lease up if this holder has it; otherwise it lapses by itself."""
        self._until = None
        try:
            current = self.couch.get(self.db, self.lease_id)
            if current.get("holder") == self.holder:
                self.couch.delete(self.db, self.lease_id, params={"rev": current["_rev"]})
        except (CouchError, CouchUnavailable):
            log.warning("lease %s not released; it lapses by itself", self.lease_id)


@contextmanager
def renewed(lease: Lease) -> Iterator[None]:
    """Keep a held lease renewed, every third of its length, until the block ends: a pass
    longer than the lease (a first pass over thousands of databases) keeps it, and no
    other taker starts the same work beside it."""
    done = threading.Event()

    def renew() -> None:
        while not done.wait(lease.seconds / 3):
            try:
                if not lease.renew():
                    return
            except (CouchError, CouchUnavailable) as exc:
                log.warning("lease %s not renewed: %s", lease.lease_id, exc)

    renewer = threading.Thread(target=renew, name=f"{lease.lease_id} renewal", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        done.set()
        renewer.join()
