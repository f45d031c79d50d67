"""Forged branches: a doc of one party shadowed by a branch the share carried from the other.

CouchDB's replicator writes with `new_edits=false`. A doc created on one side under the id
of a doc the other side keeps outside the share arrives as a new branch with no common
ancestor. CouchDB hands the write guard `oldDoc = null`, so the guard lets it through, and
the longer branch wins. The guard cannot see that the id exists; this watcher can.

It follows the `_changes` feed of every database a replication of ours writes into, on
whichever server: each server's `_replicator` says which those are. A doc
with more than one leaf is judged for each replication into that database. A live leaf the
replication carried (the source knows it and it matches the selector) is deleted when the
doc also has a live leaf of the database's own that it competes with:
- one outside the selector, which that replication could not have written; or
- one the source has never seen, on a branch with no revision in common with it.

Deleting the leaf ends its branch; the tombstone travels back, and the doc's own version
wins again on both sides.

The same pass hands each page of changes to the keeper (`keeper.py`), which sets what a
share carries back to the owner's version in the recipient's database.
"""

import logging
from dataclasses import dataclass

from service.couch import CouchClient, CouchError, CouchUnavailable, DocumentConflict, NotFound
from service.metrics import FORGED_BRANCHES_REMOVED
from service.sharing.core.model import Direction, Event, place
from service.sharing.core.revisions import history
from service.sharing.core.sites import Sites
from service.sharing.core.store import StateStore
from service.sharing.crossing.mango import matches
from service.sharing.placing.replicator import REPLICATOR_DB
from service.sharing.watching.checkpoints import Checkpoints, changes_pages
from service.sharing.watching.keeper import Inflow, Keeper, candidates
from service.sharing.watching.replications import Replication, Replications

log = logging.getLogger(__name__)
CHECKPOINT_ID = "branch-watch-checkpoints"
ACTOR = "branch watch"


@dataclass(frozen=True)
class Removal:
    """A forged leaf the watcher deleted; `database` is its place (see `model.place`), for
    admins; `side` whose database it is, the share's `owner` or `recipient`, for the parties."""

    share_id: str
    database: str
    doc_id: str
    rev: str
    side: str


def forged_leaves(leaves: list[dict], known_in_source: set[str], selector: dict) -> list[str]:
    """The revisions of the leaves an inflow planted to shadow a doc of the target's own.

    `leaves` are the doc's leaves with `_revisions`; `known_in_source` the revisions the
    inflow's source database has.
    """
    live = [leaf for leaf in leaves if not leaf.get("_deleted")]
    carried = {
        leaf["_rev"] for leaf in live if leaf["_rev"] in known_in_source and matches(selector, leaf)
    }
    forged = []
    for leaf in (leaf for leaf in live if leaf["_rev"] in carried):
        for own in live:
            if own["_rev"] in carried:
                continue
            outside = not matches(selector, own)
            unrelated = own["_rev"] not in known_in_source and not history(own) & history(leaf)
            if outside or unrelated:
                forged.append(leaf["_rev"])
                break
    return forged


class BranchWatch:
    """One pass over the changes of every database our replications write into."""

    def __init__(self, sites: Sites, store: StateStore, replications: Replications):
        self.sites = sites
        self.store = store
        self.replications = replications
        self.checkpoints = Checkpoints(store.couch, store.db, CHECKPOINT_ID)
        self.keeper = Keeper()

    def run(self, changed: set[str] | None = None) -> list[Removal]:
        """Judge the databases whose places are in `changed` (`None`: every one) since
        their checkpoints.

        A pass costs in proportion to what moved, not to the number of replications.
        """
        self.replications.refresh(changed)
        known = self.replications.targets()
        targets = known if changed is None else changed & known
        since = self.checkpoints.load()
        removed: list[Removal] = []
        for target in sorted(targets):
            into = self.replications.into(target)
            try:
                since[target] = self._follow(into, since.get(target, 0), removed)
            except NotFound:
                log.debug("branch watch: %s is gone; reconcile reports it", target)
            except (CouchError, CouchUnavailable) as exc:
                log.warning("branch watch could not read %s: %s", target, exc)
        self.checkpoints.save({t: s for t, s in since.items() if t in known})
        return removed

    def inflows(self) -> list[Replication]:
        """Every replication this broker labelled as its own in `_replicator`."""
        self.replications.refresh()
        return self.replications.all()

    def _follow(self, into: list[Replication], since: object, removed: list) -> object:
        """Judge every doc with several leaves changed after `since` in the database these
        inflows write into; return the new `since`."""
        server, target = into[0].target
        couch = self.sites[server].couch
        for page in changes_pages(couch, target, since, style="all_docs"):
            for row in page["results"]:
                if len(row.get("changes", [])) > 1 and not row["id"].startswith("_design/"):
                    removed += self._judge(couch, target, row["id"], into)
            self._keep(couch, target, into, page["results"])
            since = page["last_seq"]
        return since

    def _judge(
        self, couch: CouchClient, target: str, doc_id: str, into: list[Replication]
    ) -> list[Removal]:
        leaves = [
            row["ok"]
            for row in couch.get(target, doc_id, params={"open_revs": "all", "revs": "true"})
            if "ok" in row
        ]
        revs = [leaf["_rev"] for leaf in leaves if not leaf.get("_deleted")]
        selectors = self._selectors(into)
        removed = []
        for inflow in (i for i in into if (i.home, i.doc_id) in selectors):
            server, source = inflow.source
            missing = self.sites[server].couch.post(source, "_revs_diff", json={doc_id: revs})
            known = set(revs) - set(missing.get(doc_id, {}).get("missing", []))
            for rev in forged_leaves(leaves, known, selectors[(inflow.home, inflow.doc_id)]):
                if self._delete_leaf(couch, target, doc_id, rev):
                    side = _side(inflow)
                    removal = Removal(inflow.share_id, place(*inflow.target), doc_id, rev, side)
                    self._audit(removal)
                    removed.append(removal)
                    leaves = [leaf for leaf in leaves if leaf["_rev"] != rev]
        return removed

    def _keep(
        self, couch: CouchClient, target: str, into: list[Replication], rows: list[dict]
    ) -> None:
        """Have the keeper judge these changes for each share that carries an owner's docs
        in here."""
        looks = []  # (replication, read-only, the changed docs to judge for it)
        for flow in (i for i in into if i.direction == Direction.OWNER_TO_RECIPIENT):
            read_only = self.replications.read_only(flow)
            leaves = candidates(rows, read_only)
            if leaves:
                looks.append((flow, read_only, leaves))
        if not looks:
            return  # most pages: nothing to judge, and no selector to read
        selectors = self._selectors([flow for flow, _, _ in looks])
        for flow, read_only, leaves in looks:
            selector = selectors.get((flow.home, flow.doc_id))
            if selector is None:
                continue
            server, source = flow.source
            inflow = Inflow(
                flow.share_id, self.sites[server].couch, source, couch, target, selector, read_only
            )
            for doc_id in self.keeper.keep(inflow, leaves):
                outcome = f"set {doc_id} back to the owner's version in the recipient's database"
                self._record(Event(flow.share_id, "keep owner's version", ACTOR, outcome))

    def _selectors(self, into: list[Replication]) -> dict[tuple[str, str], dict]:
        """The selectors of these inflows' replicator docs as they are now, in one request
        per server that holds them."""
        homes: dict[str, list[str]] = {}
        for inflow in into:
            homes.setdefault(inflow.home, []).append(inflow.doc_id)
        found = {}
        for home, keys in homes.items():
            rows = self.sites[home].couch.post(
                REPLICATOR_DB, "_all_docs", json={"keys": keys}, params={"include_docs": "true"}
            )["rows"]
            for row in rows:
                if (row.get("doc") or {}).get("selector"):
                    found[(home, row["id"])] = row["doc"]["selector"]
        return found

    def _delete_leaf(self, couch: CouchClient, db: str, doc_id: str, rev: str) -> bool:
        try:
            couch.delete(db, doc_id, params={"rev": rev})
        except (NotFound, DocumentConflict):
            return False  # gone already: another pass removed it
        FORGED_BRANCHES_REMOVED.inc()
        log.warning("removed a forged branch: %s/%s rev %s", db, doc_id, rev)
        return True

    def _audit(self, removal: Removal) -> None:
        # Both parties read the share's events: the database is named by its side, never by
        # its name, which each keeps from the other.
        outcome = (
            f"removed forged revision {removal.rev} of {removal.doc_id}"
            f" in the {removal.side}'s database"
        )
        self._record(Event(removal.share_id, "remove forged branch", ACTOR, outcome))

    def _record(self, event: Event) -> None:
        try:
            self.store.add_event(event)
        except (CouchError, CouchUnavailable):
            log.warning("share %s: %s event not recorded", event.share_id, event.action)


def _side(inflow: Replication) -> str:
    """Whose database a replication writes into."""
    return "recipient" if inflow.direction == Direction.OWNER_TO_RECIPIENT else "owner"
