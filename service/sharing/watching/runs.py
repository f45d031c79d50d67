"""On-change mode: a one-shot run of a share's replication each time its source moves.

CouchDB runs at most `[replicator] max_jobs` replications at once (500) and rotates the
rest every `interval` (60 s), a few at a time, so past that number a continuous job per
direction leaves changes waiting for minutes; idle, each still holds a slot and some CPU.

In this mode the replicator docs are one-shot. When `_db_updates` says a database moved,
the replications that read from it are due. A due one whose last run ended is written
again without CouchDB's `_replication_*` fields, and CouchDB runs it once more, from its
checkpoint: the replication id is the same. Writes during a run make it due again, so a
burst costs one more run after it, not one a write. At most `max_runs` run at once on a
server, the longest due first: under `max_jobs`, CouchDB starts each at once, and
nothing starves.

When the changes are unknown (the very first pass, a server that did not answer), every
replication is due, at most once every `sweep_seconds`.

CouchDB writes a run's end into its doc through the copy of `_replicator` on the node
that ran it. On a cluster that copy may not have the broker's last write yet, and the doc
gets two branches: the one CouchDB shows may hold an older scope. A doc with siblings is
never run again as it is: its share's replicator docs are first written as its record
wants them (`restore`), and it runs once that is done.

CouchDB holds every job back a random while before it starts, up to `[replicator]
startup_jitter` (5 s by default), which is every run's lag here: a server that keeps it
above `JITTER_WARNING_MS` is named in the log once.
"""

import logging
import time
from collections.abc import Callable

from service.couch import CouchError, CouchUnavailable, NotFound
from service.metrics import REPLICATION_RUNS, REPLICATIONS_DUE
from service.sharing.core.errors import SharingError
from service.sharing.core.sites import Sites
from service.sharing.placing.replicator import REPLICATOR_DB
from service.sharing.watching.replications import Key, Replications

log = logging.getLogger(__name__)
ENDED = ("completed", "failed")  # what CouchDB writes into a one-shot doc once it ends
JITTER_WARNING_MS = 1000
COUCHDB_JITTER_MS = 5000  # CouchDB's default `startup_jitter`


class RunOnChange:
    """A follower pass: starts the runs that changes made due."""

    def __init__(
        self,
        sites: Sites,
        replications: Replications,
        max_runs: int,
        restore: Callable[[str], bool],
        sweep_seconds: float = 60.0,
    ):
        """`restore(share_id)` writes the share's replicator docs as its record wants them,
        and says whether it did: it does not while a change of the share is in progress."""
        self.sites = sites
        self.replications = replications
        self.max_runs = max_runs
        self.restore = restore
        self.sweep_seconds = sweep_seconds
        self._due: dict[Key, None] = {}  # in the order they became due
        self._running: set[Key] = set()
        self._last_sweep = float("-inf")
        self._jitter_checked: set[str] = set()

    @property
    def pending(self) -> bool:
        """Whether runs are still due: the changes that made them so are not settled."""
        return bool(self._due)

    def run(self, changed: set[str] | None = None) -> list[str]:
        """Mark due what reads from the places in `changed` (`None`: unknown), and start
        what may start; return the doc ids started."""
        self.replications.refresh(changed)
        if changed is None:
            if time.monotonic() - self._last_sweep >= self.sweep_seconds:
                self._last_sweep = time.monotonic()
                self._due.update(dict.fromkeys(r.key for r in self.replications.all()))
        else:
            for source in changed:
                self._due.update(dict.fromkeys(r.key for r in self.replications.out_of(source)))
        started = []
        for site in self.sites:
            try:
                self._check_jitter(site.name)
                started += self._start_on(site.name)
            except (CouchError, CouchUnavailable) as exc:
                log.warning("on-change runs not started on %s: %s", site.name, exc)
        REPLICATIONS_DUE.set(len(self._due))
        return started

    def _start_on(self, home: str) -> list[str]:
        """Read the docs of this server's running and first due replications, and write
        again those due whose last run ended, while fewer than `max_runs` run."""
        due = [key for key in self._due if key[0] == home][: self.max_runs]
        running = {key for key in self._running if key[0] == home}
        keys = [doc_id for _, doc_id in running | set(due)]
        if not keys:
            return []
        couch = self.sites[home].couch
        params = {"include_docs": "true", "conflicts": "true"}
        rows = couch.post(REPLICATOR_DB, "_all_docs", json={"keys": keys}, params=params)["rows"]
        docs = {}
        for row in rows:
            key, doc = (home, row["key"]), row.get("doc")
            if doc is None or doc.get("continuous"):  # gone, or not ours to start
                self._due.pop(key, None)
                self._running.discard(key)
            elif doc.get("_conflicts"):  # which scope it shows is not known: restore it
                self._running.discard(key)
                if self._restore(doc):
                    self._due.setdefault(key)  # it runs once restored, on a later pass
                else:  # the change in progress writes it, or reconcile
                    self._due.pop(key, None)
            elif doc.get("_replication_state") in ENDED:
                self._running.discard(key)
                docs[key] = doc
            else:  # running, or waiting for a slot: a write during it is a run after it
                self._running.add(key)
        free = self.max_runs - sum(1 for key in self._running if key[0] == home)
        again = [key for key in due if key in docs][: max(free, 0)]
        if not again:
            return []
        bodies = [_without_state(docs[key]) for key in again]
        results = couch.post(REPLICATOR_DB, "_bulk_docs", json={"docs": bodies})
        started = [result["id"] for result in results if result.get("ok")]
        for doc_id in started:  # a conflict stays due: the next pass reads it again
            self._due.pop((home, doc_id), None)
            self._running.add((home, doc_id))
        REPLICATION_RUNS.inc(len(started))
        return started

    def _restore(self, doc: dict) -> bool:
        share_id = (doc.get("sharing_broker") or {}).get("share_id")
        try:
            return self.restore(share_id)
        except (CouchError, CouchUnavailable, SharingError) as exc:
            log.warning("share %s: replicator doc with siblings not restored: %s", share_id, exc)
            return True  # tried again on the next pass

    def _check_jitter(self, home: str) -> None:
        """Warn once if the server holds runs back longer than `JITTER_WARNING_MS`."""
        if home in self._jitter_checked:
            return
        couch = self.sites[home].couch
        try:
            value = couch.get("_node", "_local", "_config", "replicator", "startup_jitter")
        except NotFound:
            value = COUCHDB_JITTER_MS
        except (CouchError, CouchUnavailable):
            value = None  # a server that hides its settings: nothing to say
        self._jitter_checked.add(home)
        jitter = int(value) if str(value).isdigit() else 0
        if jitter > JITTER_WARNING_MS:
            log.warning(
                "server %s: [replicator] startup_jitter is %d ms, so each on-change run waits"
                " up to that long to start; set it to 100 or less",
                home,
                jitter,
            )


def _without_state(doc: dict) -> dict:
    """The doc as the broker wrote it: CouchDB runs a doc with no `_replication_state`."""
    return {k: v for k, v in doc.items() if not k.startswith("_replication_")}
