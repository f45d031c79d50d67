"""The fast loop: the passes that follow `_changes` feeds every few seconds."""

import logging
import threading

from service.couch import CouchError, CouchUnavailable
from service.sharing.lease import Lease
from service.sharing.updates import DatabaseUpdates

log = logging.getLogger(__name__)
LEASE_ID = "followers-lease"
LEASE_SECONDS = 30


def follow_every(
    seconds: float, passes: list, lease: Lease, updates: DatabaseUpdates, stop: threading.Event
) -> None:
    """Every `seconds`, while this process holds `lease` and until `stop`: run each pass
    over the databases `updates` says changed."""
    while not stop.wait(seconds):
        try:
            if not lease.hold():
                continue
        except (CouchError, CouchUnavailable) as exc:
            log.warning("followers lease not taken: %s", exc)
            continue
        changed = updates.changed()
        for follower in passes:
            try:
                follower.run(changed)
            except (CouchError, CouchUnavailable) as exc:
                log.warning("%s pass failed: %s", type(follower).__name__, exc)
            except Exception:  # a bug in one pass must not stop the loop for good
                log.exception("%s pass failed", type(follower).__name__)
