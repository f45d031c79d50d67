"""The followers' cost per pass, measured in-process against the bench's state."""

import time

from bench.counts import counting
from service.config import Settings
from service.sharing.broker import Broker
from service.sharing.core.lease import Lease
from service.sharing.watching.followers import one_pass


class FollowerPasses:
    """The passes a followers loop runs (branch watch, rule follower, state recorder), with
    a lease of their own: the served broker's followers are paused while these run."""

    def __init__(self, settings: Settings):
        broker = Broker.from_settings(settings)
        self.passes = broker.followers()
        self.lease = Lease(broker.store.couch, broker.store.db, "bench-followers-lease", 60)
        self.updates = broker.database_updates()

    def one(self) -> tuple[int, float]:
        """One pass: the CouchDB requests it sent and its wall time in ms (its requests
        run one after another, so this is CouchDB's time plus the broker's)."""
        with counting() as sent:
            start = time.perf_counter()
            one_pass(self.passes, self.lease, self.updates)
            elapsed = (time.perf_counter() - start) * 1000
        return len(sent), elapsed
