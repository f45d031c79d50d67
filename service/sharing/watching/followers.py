"""The fast loop: the passes that follow `_changes` feeds every few seconds."""

import logging
import threading
import time

from service.couch import CouchError, CouchUnavailable
from service.metrics import FOLLOWERS_UNKNOWN_SERVERS
from service.sharing.core.lease import Lease, renewed
from service.sharing.core.store import StateStore
from service.sharing.watching.updates import DatabaseUpdates

log = logging.getLogger(__name__)
LEASE_ID = "followers-lease"
LONGEST_WAIT = 5.0  # seconds a pass waits for a change; well under the read timeout


def lease_seconds(interval: float) -> float:
    """A lease a few passes long: renewed every other pass or so, and lapsing soon after
    a holder that dies without giving it up."""
    return max(3 * interval, 6.0)


class FollowersLease(Lease):
    """The followers' lease, taken only by a replica that knows every server the
    registrations name. One that does not (settings that differ between replicas, or a
    rolling change of them) would stop the runs and watches of the shares there."""

    CHECK_SECONDS = 30.0

    def __init__(self, store: StateStore, known: set[str], seconds: float):
        super().__init__(store.couch, store.db, LEASE_ID, seconds)
        self.store = store
        self.known = known
        self._unknown: set[str] = set()
        self._checked_at: float | None = None

    def unknown(self) -> set[str]:
        """The servers registrations name that this replica does not know, read again
        every `CHECK_SECONDS`."""
        now = time.monotonic()
        if self._checked_at is None or now - self._checked_at >= self.CHECK_SECONDS:
            self._unknown = self.store.unknown_servers(self.known)
            self._checked_at = now
            FOLLOWERS_UNKNOWN_SERVERS.set(len(self._unknown))
            if self._unknown:
                names = ", ".join(sorted(self._unknown))
                log.warning("not leading the followers: servers unknown here: %s", names)
        return self._unknown

    def hold(self) -> bool:
        if self.unknown():
            if self._until is not None:
                self.drop()
            return False
        return super().hold()


def follow_every(
    seconds: float, passes: list, lease: Lease, updates: DatabaseUpdates, stop: threading.Event
) -> None:
    """While this process holds `lease` and until `stop`: run each pass over the
    databases `updates` says changed, as soon as they change, and every `seconds` at
    least. On `stop` the lease is given up, so the next process (a restart, a rolling
    deploy) takes over at once."""
    try:
        while not stop.is_set():
            if not one_pass(passes, lease, updates, wait=min(seconds, LONGEST_WAIT)):
                stop.wait(seconds)
    finally:
        lease.drop()


def one_pass(passes: list, lease: Lease, updates: DatabaseUpdates, wait: float = 0.0) -> bool:
    """Run the passes once, after waiting up to `wait` seconds for a change; return whether
    the changes were known (else the caller waits before the next). When every pass dealt
    with them and none has work left over (`pending`), they count as settled."""
    try:
        if not lease.hold():
            return False
    except (CouchError, CouchUnavailable) as exc:
        log.warning("followers lease not taken: %s", exc)
        return False
    with renewed(lease):
        changed = updates.changed(wait)
        dealt_with = changed is not None
        for follower in passes:
            try:
                follower.run(changed)
            except (CouchError, CouchUnavailable) as exc:
                dealt_with = False
                log.warning("%s pass failed: %s", type(follower).__name__, exc)
            except Exception:  # a bug in one pass must not stop the loop for good
                dealt_with = False
                log.exception("%s pass failed", type(follower).__name__)
    if dealt_with and not any(getattr(follower, "pending", False) for follower in passes):
        updates.settled()  # the on-change runs and the rule follower keep work over
    return changed is not None
