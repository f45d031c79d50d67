"""On-change mode: a run of a share's replication each time its source moves.

CouchDB runs at most `[replicator] max_jobs` replications at once (500) and rotates the
rest every `interval` (60 s), a few at a time, so past that number a continuous job per
direction leaves changes waiting for minutes; idle, each still holds a slot and some CPU.

In this mode a replicator doc is held (see `replicator`): it says what to run, and CouchDB
leaves it alone. When `_db_updates` says a database moved, the replications that read from
it are due, and so is one whose doc was written (a new share, a changed scope). The broker
runs a due one itself, as a transient replication (`POST /_replicate`, answered when the
run ends), with its doc's replication id: each run goes on from the last one's checkpoint.
Writes during a run make it due again, and the same worker runs it once more after it: a
burst costs one more run, not one a write. A run whose target holds all it would carry is
spared (see `carried`): the way back of a write that just crossed, for one. At most
`max_runs` run at once on a server, the longest due first: under `max_jobs`, CouchDB
starts each at once, and nothing starves.

A run that fails (a server down, a database gone) is due again after a backoff, from
`RETRY_SECONDS` doubling to `LONGEST_RETRY_SECONDS`: the replicator logs in as the share
user, and CouchDB 3.4+ locks out a user after repeated failed logins. Until a run goes
through, `states_on` says the replication is `crashing`, and why.

When the changes are unknown (a server that did not answer), every replication is due, at
most once every `sweep_seconds`. Such a sweep waits behind the runs that changes made due,
and takes at most a quarter of `max_runs` (`SWEEP_SHARE`), so it never holds up a write.

How far `_replicator` had been read when the runs last had nothing left to do is saved in
the state database (`REPLICATOR_CHECKPOINT_ID`), at most every `Checkpoints.every`. A restarted
process (or a replica taking over the lease) runs the docs written since then, and the
replications whose sources move: not every one. Where nothing was saved (the first start
of on-change mode over existing shares), every replication runs once, as a sweep.

Only the broker writes a held doc, so runs leave no siblings. One that has some all the
same (two replicas wrote it at once through two nodes of a cluster) may show an older
scope: it is never run as it is. Its share's replicator docs are first written as its
record wants them (`restore`), and it runs once that is done. So is a doc that is not held
(written in continuous mode, or by a broker that let CouchDB run its one-shot docs).

A server whose settings make every run dearer is named in the log once (`server_checks`).
"""

import itertools
import logging
import threading
import time
from collections.abc import Callable

from service.couch import CouchClient, CouchError, CouchUnavailable, NotFound
from service.metrics import REPLICATION_RUNS, REPLICATION_RUNS_SPARED, REPLICATIONS_DUE
from service.sharing.core.errors import SharingError
from service.sharing.core.sites import Sites
from service.sharing.placing.replicator import REPLICATOR_DB, is_held, redacted, transient_body
from service.sharing.watching.carried import Carried
from service.sharing.watching.checkpoints import Checkpoints
from service.sharing.watching.replications import Key, Replications
from service.sharing.watching.server_checks import ServerChecks

log = logging.getLogger(__name__)
RUN_SECONDS = 600.0  # the longest a run is waited for; a longer one is run again later
RETRY_SECONDS = 5.0
LONGEST_RETRY_SECONDS = 300.0
SWEEP_SHARE = 0.25  # of `max_runs`: at most so many sweep runs at once
REPLICATOR_CHECKPOINT_ID = "replicator-checkpoints"


def in_a_thread(work: Callable[[], None]) -> None:
    """Start `work` in a thread of its own."""
    threading.Thread(target=work, name="on-change run", daemon=True).start()


class RunOnChange:
    """A follower pass: starts the runs that changes made due, each in a worker."""

    def __init__(
        self,
        sites: Sites,
        replications: Replications,
        max_runs: int,
        restore: Callable[[str], bool],
        checkpoints: Checkpoints,
        sweep_seconds: float = 60.0,
        launch: Callable[[Callable[[], None]], None] = in_a_thread,
    ):
        """`restore(share_id)` writes the share's replicator docs as its record wants them,
        and says whether it did: it does not while a change of the share is in progress.
        `checkpoints` keeps where `_replicator` was read to when nothing was left to do.
        `launch(work)` runs a worker (each runs one replication, as often as it is due)."""
        self.sites = sites
        self.replications = replications
        self.max_runs = max_runs
        self.restore = restore
        self.checkpoints = checkpoints
        self.sweep_seconds = sweep_seconds
        self.launch = launch
        self._couches = {
            site.name: site.couch.patient(RUN_SECONDS, connections=max_runs) for site in sites
        }
        self.carried = Carried(self._couches)
        self._lock = threading.Lock()  # over what follows, shared with the workers
        self._due: dict[Key, None] = {}  # in the order they became due
        self._swept: dict[Key, None] = {}  # due as changes were unknown: after `_due`
        self._running: set[Key] = set()
        self._sweeping: set[Key] = set()  # the running ones started from `_swept`
        self._next_pass: dict[Key, None] = {}  # due from the next pass on, not before
        self._failing: dict[Key, tuple[str, float, float]] = {}  # error, backoff, retry at
        self._last_sweep = float("-inf")
        self._position_read = False
        self._checks = ServerChecks()

    @property
    def pending(self) -> bool:
        """Whether runs are due, running or to be tried again: the changes that made them
        so are not settled."""
        with self._lock:
            waiting = self._due or self._swept or self._next_pass
            return bool(waiting or self._running or self._failing)

    def states_on(self, home: str) -> dict[str, dict]:
        """Doc id -> {state, error} of this server's replications that run now or fail;
        the others are idle."""
        with self._lock:
            failing = {key: error for key, (error, _, _) in self._failing.items()}
            running = set(self._running)
        found = {key: {"state": "crashing", "error": error} for key, error in failing.items()}
        found |= {key: {"state": "running", "error": None} for key in running}
        return {doc_id: state for (server, doc_id), state in found.items() if server == home}

    def run(self, changed: set[str] | None = None) -> list[str]:
        """Mark due what reads from the places in `changed` (`None`: unknown) and what was
        written, and start what may start; return the doc ids started."""
        self._save_or_load_position()
        self.replications.refresh(changed)
        due, swept = self.replications.take_written(), self.replications.take_unknown()
        if changed is None:
            if time.monotonic() - self._last_sweep >= self.sweep_seconds:
                self._last_sweep = time.monotonic()
                swept += [r.key for r in self.replications.all()]
        else:
            for source in changed:
                due += [r.key for r in self.replications.out_of(source)]
        with self._lock:
            now = time.monotonic()
            due += list(self._next_pass)
            self._next_pass.clear()
            due += [key for key, (_, _, retry_at) in self._failing.items() if retry_at <= now]
            backing_off = {key for key, (_, _, at) in self._failing.items() if at > now}
            for key in due:
                self._swept.pop(key, None)
            self._due.update(dict.fromkeys(key for key in due if key not in backing_off))
            fresh = backing_off | self._due.keys()
            self._swept.update(dict.fromkeys(key for key in swept if key not in fresh))
        started = []
        for site in self.sites:
            self._checks.check_once(site.name, site.couch)
            started += self._start_on(site.name)
        return started

    def _save_or_load_position(self) -> None:
        """Read the saved `_replicator` position before the first look; after that, save
        where it was read to when nothing is left to do, now and then (`Checkpoints.every`)."""
        if not self._position_read:
            try:
                self.replications.start_from(self.checkpoints.load())
                self._position_read = True
            except (CouchError, CouchUnavailable) as exc:
                log.warning("_replicator position not read: %s", exc)
        elif not self.pending and not self.replications.untaken:
            self.checkpoints.save_when_due(self.replications.positions())

    def _start_on(self, home: str) -> list[str]:
        """Start a worker for each replication due on this server, the longest due first,
        while fewer than `max_runs` run; then sweep runs, while fewer than `SWEEP_SHARE`
        of them run."""
        with self._lock:
            running = sum(1 for key in self._running if key[0] == home)
            starting = self._take(self._due, home, self.max_runs - running)
            sweeping = sum(1 for key in self._sweeping if key[0] == home)
            room = min(self.max_runs - running - len(starting), self._sweep_runs() - sweeping)
            swept = self._take(self._swept, home, room)
            self._sweeping.update(swept)
            REPLICATIONS_DUE.set(len(self._due) + len(self._swept))
        for key in starting + swept:
            self.launch(lambda key=key: self._work(key))
        return [doc_id for _, doc_id in starting + swept]

    def _take(self, queue: dict[Key, None], home: str, room: int) -> list[Key]:
        """Up to `room` of this server's replications in `queue` that do not run yet, the
        longest waiting first; they run from now."""
        waiting = (key for key in queue if key[0] == home and key not in self._running)
        taken = list(itertools.islice(waiting, max(room, 0)))
        for key in taken:
            del queue[key]
            self._running.add(key)
        return taken

    def _sweep_runs(self) -> int:
        return max(1, int(self.max_runs * SWEEP_SHARE))

    def _work(self, key: Key) -> None:
        """Run the replication while it is due; then start what waited for its slot, rather
        than leave that to the next pass (a first pass over thousands of databases is long)."""
        try:
            self._run_while_due(key)
        except Exception:  # a bug must not leave the replication running for good
            log.exception("on-change run of %s failed", key[1])
            with self._lock:
                self._running.discard(key)
                self._sweeping.discard(key)
        self._start_on(key[0])

    def _run_while_due(self, key: Key) -> None:
        """Run the replication, then again while writes made it due meanwhile."""
        while True:
            ran = self._run_once(key)
            with self._lock:
                if not ran or key not in self._due:
                    self._running.discard(key)  # with the look at `_due`: none is lost
                    self._sweeping.discard(key)
                    return
                del self._due[key]
                self._sweeping.discard(key)  # run again for a change: not a sweep now

    def _run_once(self, key: Key) -> bool:
        """Read the doc and run it once; return whether it ran."""
        home, doc_id = key
        couch = self._couches[home]
        try:
            doc = couch.get(REPLICATOR_DB, doc_id, params={"conflicts": "true"})
        except NotFound:  # the share ended
            self._forget(key)
            return False
        except (CouchError, CouchUnavailable) as exc:
            self._failed(key, exc)
            return False
        if doc.get("continuous"):  # not ours to run
            self._forget(key)
            return False
        if doc.get("_conflicts") or not is_held(doc):
            self._forget(key)
            if self._restore(doc):  # its rewrite makes it due again, at the next pass
                with self._lock:
                    self._next_pass.setdefault(key)
            return False
        return self._replicate(key, couch, doc)

    def _replicate(self, key: Key, couch: CouchClient, doc: dict) -> bool:
        """Run the doc once, unless the target holds all it would carry; say whether the
        replication is where it should be."""
        replication = self.replications.get(key)
        if replication is not None and self.carried.nothing_new(replication, doc):
            REPLICATION_RUNS_SPARED.inc()
            return True
        REPLICATION_RUNS.inc()
        try:
            result = couch.post("_replicate", json=transient_body(doc))
        except (CouchError, CouchUnavailable) as exc:
            self._failed(key, exc)
            return False
        self.carried.ran(key, doc, result.get("source_last_seq"))
        with self._lock:
            self._failing.pop(key, None)
        return True

    def _failed(self, key: Key, exc: Exception) -> None:
        """Keep the error, and make the replication due again after a backoff: then a run,
        not a question."""
        self.carried.forget(key)
        error = redacted(str(exc)) or type(exc).__name__
        log.warning("on-change run of %s failed: %s", key[1], error)
        with self._lock:
            _, backoff, _ = self._failing.get(key, ("", RETRY_SECONDS / 2, 0.0))
            backoff = min(backoff * 2, LONGEST_RETRY_SECONDS)
            self._failing[key] = (error, backoff, time.monotonic() + backoff)
            self._due.pop(key, None)  # writes meanwhile wait for the retry too
            self._swept.pop(key, None)

    def _forget(self, key: Key) -> None:
        self.carried.forget(key)
        with self._lock:
            self._due.pop(key, None)
            self._swept.pop(key, None)
            self._next_pass.pop(key, None)
            self._failing.pop(key, None)

    def _restore(self, doc: dict) -> bool:
        share_id = (doc.get("sharing_broker") or {}).get("share_id")
        try:
            return self.restore(share_id)
        except (CouchError, CouchUnavailable, SharingError) as exc:
            log.warning("share %s: replicator doc not restored: %s", share_id, exc)
            return True  # tried again on the next pass
