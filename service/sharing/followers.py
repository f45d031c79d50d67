"""The fast loop: the passes that follow `_changes` feeds every few seconds."""

import logging
import threading

from service.couch import CouchError, CouchUnavailable
from service.sharing.lease import Lease

log = logging.getLogger(__name__)
LEASE_ID = "followers-lease"
LEASE_SECONDS = 30


def follow_every(seconds: float, passes: list, lease: Lease, stop: threading.Event) -> None:
    """Run each pass's `run()` every `seconds` while this process holds `lease`, until `stop`."""
    while not stop.wait(seconds):
        try:
            if not lease.hold():
                continue
        except (CouchError, CouchUnavailable) as exc:
            log.warning("followers lease not taken: %s", exc)
            continue
        for follower in passes:
            try:
                follower.run()
            except (CouchError, CouchUnavailable) as exc:
                log.warning("%s pass failed: %s", type(follower).__name__, exc)
