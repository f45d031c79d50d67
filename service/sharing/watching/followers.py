"""The fast loop: the passes that follow `_changes` feeds every few seconds."""

import logging
import threading

from service.couch import CouchError, CouchUnavailable
from service.sharing.core.lease import Lease
from service.sharing.watching.updates import DatabaseUpdates

log = logging.getLogger(__name__)
LEASE_ID = "followers-lease"
LONGEST_WAIT = 5.0  # seconds a pass waits for a change; well under the read timeout


def lease_seconds(interval: float) -> float:
    """A lease a few passes long: renewed every other pass or so, and lapsing soon after
    a holder that dies without giving it up."""
    return max(3 * interval, 6.0)


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
