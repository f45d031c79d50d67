"""The fast loop: the passes that follow `_changes` feeds every few seconds."""

import logging
import threading

from service.couch import CouchError, CouchUnavailable
from service.sharing.core.lease import Lease
from service.sharing.watching.updates import DatabaseUpdates

log = logging.getLogger(__name__)
LEASE_ID = "followers-lease"


def lease_seconds(interval: float) -> float:
    """A lease a few passes long: renewed every other pass or so, and lapsing soon after
    a holder that dies without giving it up."""
    return max(3 * interval, 6.0)


def follow_every(
    seconds: float, passes: list, lease: Lease, updates: DatabaseUpdates, stop: threading.Event
) -> None:
    """Every `seconds`, while this process holds `lease` and until `stop`: run each pass
    over the databases `updates` says changed. On `stop` the lease is given up, so the
    next process (a restart, a rolling deploy) takes over at once."""
    try:
        while not stop.wait(seconds):
            one_pass(passes, lease, updates)
    finally:
        lease.drop()


def one_pass(passes: list, lease: Lease, updates: DatabaseUpdates) -> None:
    try:
        if not lease.hold():
            return
    except (CouchError, CouchUnavailable) as exc:
        log.warning("followers lease not taken: %s", exc)
        return
    changed = updates.changed()
    for follower in passes:
        try:
            follower.run(changed)
        except (CouchError, CouchUnavailable) as exc:
            log.warning("%s pass failed: %s", type(follower).__name__, exc)
        except Exception:  # a bug in one pass must not stop the loop for good
            log.exception("%s pass failed", type(follower).__name__)
