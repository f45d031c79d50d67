"""Reconcile: bring CouchDB and the share records back in line after crashes and hand edits.

It settles conflicting branches in the state database, which a cluster leaves when two
writers through two nodes are both told yes (a stop wins over a change), finishes operations
a crash left half-done, rewrites the parts of active shares that are missing, changed or
failed, and removes broker-made parts that no share accounts for: replicator docs,
db_sharing docs, share users, and what an earlier version left: share users' names in
`_security`, its guard. Only docs the broker labelled as its own are ever removed, and only
`_security` names of share users.
Every server is looked at; one that does not answer is reported, and the others are done.
A lease in the state database keeps reconcilers on several replicas from working at once.
"""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from service.config import DEFAULT_SERVER
from service.couch import CouchError, CouchUnavailable, NotFound
from service.metrics import RECONCILE_REPAIRS, STATE_CONFLICTS
from service.sharing.core.errors import SharingError
from service.sharing.core.lease import Lease
from service.sharing.core.model import Access, Database, Direction, Share, Status, now_iso
from service.sharing.core.sites import Site, Sites
from service.sharing.core.store import StateStore
from service.sharing.crossing.scan import docs_with_prefix
from service.sharing.lifecycle.shares import ShareService
from service.sharing.lifecycle.views import replication_ids
from service.sharing.placing.access import remove_member_name
from service.sharing.placing.credentials import USER_PREFIX, USERS_DB, user_doc_id
from service.sharing.placing.parts import DB_SHARING, ensure_absent, restart_replication
from service.sharing.placing.replicator import REPLICATOR_DB, REPLICATOR_PREFIX, scheduler_states
from service.sharing.placing.withdraw import withdraw_doc

log = logging.getLogger(__name__)
ACTOR = "reconcile"
PROGRESS_EVERY = 500  # a log line each so many active shares checked, on long passes
LEASE_ID = "reconcile-lease"
LEASE_SECONDS = 300
LIVE = (Status.PROVISIONING, Status.ACTIVE, Status.REVOKING)
FAILURES = (CouchError, CouchUnavailable, SharingError)


class LeaseLost(Exception):
    """The reconcile lease could not be renewed mid-pass: another reconciler may hold it."""


@dataclass
class Report:
    """What reconcile found, what it did about it, and what it could not do."""

    found: list[dict] = field(default_factory=list)
    repaired: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    skipped: str | None = None


class Reconciler:
    """One pass of reconciliation."""

    def __init__(
        self,
        sites: Sites,
        store: StateStore,
        shares: ShareService,
        forged_branches: Callable[[], list],
        operation_grace_seconds: float = 60.0,
    ):
        """`forged_branches` runs a pass of the branch watch and returns its removals; an
        operation younger than `operation_grace_seconds` is left to the request running it."""
        self.sites = sites
        self.store = store
        self.shares = shares
        self.forged_branches = forged_branches
        self.operation_grace_seconds = operation_grace_seconds
        self.lease = Lease(store.couch, store.db, LEASE_ID, LEASE_SECONDS)

    def run(self) -> Report:
        report = Report()
        if not self.lease.take():
            report.skipped = "another reconciler holds the lease"
            return report
        try:
            self._pass(report)
        except LeaseLost:
            report.skipped = "the lease could not be renewed mid-pass; the next pass goes on"
            log.warning("reconcile stopped: %s", report.skipped)
        finally:
            self.lease.drop()
        return report

    def _pass(self, report: Report) -> None:
        """Every check, in order; the lease is renewed before each and as each goes
        (`_still_leading`), so that a slow stretch without findings keeps it too."""
        steps = (
            self._resolve_state_conflicts,
            self._finish_operations,
            self._repair_active,
            self._check_sites,
            self._check_databases,
            self._remove_forged_branches,
            self._remove_expired_keys,
            self._report_unsealed,
        )
        for step in steps:
            self._still_leading()
            step(report)

    def _check_sites(self, report: Report) -> None:
        """Orphan replicator docs and share users on each server."""
        for site in self.sites:
            self._still_leading()
            try:
                self._remove_orphan_replications(report, site)
                self._remove_orphan_users(report, site)
            except FAILURES as exc:
                error = {"kind": "server unreadable", "server": site.name, "error": str(exc)}
                report.errors.append(error)

    def _still_leading(self) -> None:
        """Renew the lease once half of it is gone, so that a long pass keeps it; raise
        LeaseLost if another reconciler took it meanwhile."""
        if not self.lease.hold():
            raise LeaseLost

    def _attempt(self, report: Report, finding: dict, action) -> None:
        self._still_leading()
        report.found.append(finding)
        try:
            outcome = action()
        except FAILURES as exc:
            report.errors.append({**finding, "error": str(exc)})
            log.warning("reconcile could not repair %s: %s", finding, exc)
            return
        if outcome:
            report.repaired.append({**finding, "action": outcome})
            RECONCILE_REPAIRS.labels(finding["kind"]).inc()

    def _resolve_state_conflicts(self, report: Report) -> None:
        """Put back each record that an earlier state was grafted over. Then settle each
        conflicted record on one branch: CouchDB's winner, or a losing branch that stops
        the share (`StateStore.settle_conflict`). The repairs that follow bring CouchDB in
        line with it. Each is counted: a conflict here means that two writers were both
        told yes."""
        for doc_id, rev in self.store.replayed().items():
            finding = {"kind": "replayed record", "record": doc_id}
            self._attempt(report, finding, lambda d=doc_id, r=rev: self._restore(d, r))
        for doc_id, losers in self.store.conflicts().items():
            finding = {"kind": "state conflict", "doc_id": doc_id, "dropped": losers}
            STATE_CONFLICTS.inc()
            self._attempt(report, finding, lambda d=doc_id, r=losers: self._drop(d, r))

    def _restore(self, doc_id: str, rev: str) -> str:
        if self.store.restore_replayed(doc_id, rev):
            return "wrote back the latest state the broker sealed"
        return "deleted the earlier state; the latest is compacted away, so the record is gone"

    def _drop(self, doc_id: str, revs: list[str]) -> str:
        if self.store.settle_conflict(doc_id, revs):
            return "a stop wins over a change: wrote the stop onto the winning revision"
        return "kept the winning revision, deleted the others"

    def _finish_operations(self, report: Report) -> None:
        unfinished = {
            "$or": [
                {"status": {"$in": [str(Status.PROVISIONING), str(Status.REVOKING)]}},
                {"operation": {"$type": "object"}},
            ]
        }
        started_before = now_iso(-round(self.operation_grace_seconds))
        for share in self.store.each_share([unfinished]):
            if share.operation and share.operation.started_at > started_before:
                continue  # perhaps still running in another replica's request
            finding = {
                "kind": "unfinished operation",
                "share_id": share.id,
                "status": str(share.status),
                "operation": share.operation.name if share.operation else None,
            }
            self._attempt(report, finding, lambda s=share: self.shares.resume(s, ACTOR))

    def _repair_active(self, report: Report) -> None:
        crashing = {}
        for site in self.sites:
            try:
                crashing.update(scheduler_states(site.couch, ("crashing",)) or {})
            except FAILURES as exc:
                error = {"kind": "server unreadable", "server": site.name, "error": str(exc)}
                report.errors.append(error)
        active = self.store.count_by_status().get(str(Status.ACTIVE), 0)
        shares = self.store.each_share([{"status": str(Status.ACTIVE)}])
        for checked, share in enumerate(shares, 1):
            self._still_leading()
            if checked % PROGRESS_EVERY == 0:
                log.info("reconcile: %d of %d active shares checked", checked, active)
            if share.operation:  # a change under way: its own, or `_finish_operations`'
                continue
            finding = {"kind": "active share checked", "share_id": share.id}
            try:
                repaired = self.shares.repair(share)
            except FAILURES as exc:
                gone = self._gone_databases(share)
                if gone:  # nothing left to share: revoke, so its credential goes too
                    gone_finding = {
                        "kind": "database gone",
                        "share_id": share.id,
                        "databases": gone,
                    }
                    self._attempt(report, gone_finding, lambda s=share: self._revoke(s))
                else:
                    report.errors.append({**finding, "error": str(exc)})
                continue
            self._report_repairs(report, share, repaired)
            for doc_id, direction in zip(replication_ids(share), Direction, strict=False):
                if doc_id not in crashing:
                    continue
                finding = {"kind": "crashing replication", "share_id": share.id}
                finding.update(doc_id=doc_id, error=crashing[doc_id]["error"])
                rewritten = "credentials" in repaired or f"replication:{direction}" in repaired
                restart = lambda s=share, d=doc_id, done=rewritten: self._restart(s, d, done)  # noqa: E731
                self._attempt(report, finding, restart)

    @staticmethod
    def _report_repairs(report: Report, share: Share, repaired: list[str]) -> None:
        for part in repaired:
            entry = {"kind": "missing, changed or failed part", "share_id": share.id, "part": part}
            report.found.append(entry)
            report.repaired.append({**entry, "action": "rewrote it"})
            RECONCILE_REPAIRS.labels(entry["kind"]).inc()

    def _remove_orphan_replications(self, report: Report, site: Site) -> None:
        docs = list(docs_with_prefix(site.couch, REPLICATOR_DB, REPLICATOR_PREFIX))
        self._prune(
            report,
            self._ours(docs),
            lambda doc_id, share: share is not None and doc_id in replication_ids(share),
            lambda doc_id: _on(site, {"kind": "orphan replicator doc", "doc_id": doc_id}),
            lambda doc_id: self._remove(site, REPLICATOR_DB, doc_id),
        )

    def _remove_orphan_users(self, report: Report, site: Site) -> None:
        docs = list(docs_with_prefix(site.couch, USERS_DB, user_doc_id(USER_PREFIX)))
        self._prune(
            report,
            self._ours(docs),
            lambda _doc_id, share: _live(share),
            lambda doc_id: _on(site, {"kind": "orphan share user", "doc_id": doc_id}),
            lambda doc_id: self._remove(site, USERS_DB, doc_id),
        )

    def _check_databases(self, report: Report) -> None:
        """Leftover db_sharing docs, and what the earlier layout kept for shares no longer
        live (`_security` names, guard scopes), in each database."""
        cursor = None
        while True:
            databases, cursor = self.store.list_databases(cursor, 200)
            for database in databases:
                self._still_leading()
                try:
                    site = self.shares.registry.site(database)
                    exists = self.shares.registry.exists(database)
                except FAILURES as exc:
                    error = {"kind": "database unreadable", "database": database.place}
                    report.errors.append({**error, "error": str(exc)})
                    continue
                if not exists:
                    report.found.append({"kind": "database gone", "database": database.place})
                    continue
                for check in (self._check_db_sharing, self._check_members, self._check_guard):
                    try:
                        check(report, site, database)
                    except FAILURES as exc:
                        error = {
                            "kind": "database unreadable",
                            "database": database.place,
                            "error": str(exc),
                        }
                        report.errors.append(error)
            if cursor is None:
                return

    def _check_members(self, report: Report, site: Site, database: Database) -> None:
        """Drop share users' names from `_security` that no live share of ours, or no user,
        backs. The broker names no share user there any more (share users are members by
        role): a live share's name, left by the earlier layout, goes with its repair."""
        db = database.database
        names = (site.couch.get(db, "_security").get("members") or {}).get("names") or []
        self._prune(
            report,
            {n: n.removeprefix(USER_PREFIX) for n in names if n.startswith(USER_PREFIX)},
            # A name with a user but no share of ours is another broker's: not ours to judge.
            lambda name, share: _live(share) or (share is None and _user_exists(site, name)),
            lambda name: {
                "kind": "orphan _security entry",
                "database": database.place,
                "name": name,
            },
            lambda name: _removed(remove_member_name(site.couch, db, name)),
        )

    def _check_guard(self, report: Report, site: Site, database: Database) -> None:
        """Drop the scopes an earlier version's guard held that no live share of ours backs
        (a live share's go with its repair); such a guard left with none goes."""
        db = database.database
        access = site.access
        self._prune(
            report,
            {n: n.removeprefix(USER_PREFIX) for n in access.earlier(db)},
            lambda _name, share: _live(share),
            lambda name: {"kind": "orphan guard scope", "database": database.place, "name": name},
            lambda name: _removed(access.drop_earlier(db, {name})),
        )

    def _check_db_sharing(self, report: Report, site: Site, database: Database) -> None:
        """Drop the broker's db_sharing docs that no live read-write share needs: deleted
        where the database is the owner's, withdrawn (a marked tombstone, which reaches the
        devices) where a replication copied it."""
        db, config_uuid = database.database, database.config_uuid
        ours = self._ours(list(docs_with_prefix(site.couch, db, f"{DB_SHARING}-")))

        def needed(doc_id: str, share: Share | None) -> bool:
            two_way = _live(share) and share.access is Access.READ_WRITE
            return two_way and share.db_sharing_doc_id == doc_id

        def prune(docs: dict[str, str], kind: str, remove) -> None:
            finding = lambda doc_id: {"kind": kind, "database": database.place, "doc_id": doc_id}  # noqa: E731
            self._prune(report, docs, needed, finding, lambda doc_id: remove(site, db, doc_id))

        owned = {i: s for i, s in ours.items() if i.startswith(f"{DB_SHARING}-{config_uuid}--")}
        copies = {i: s for i, s in ours.items() if i.endswith(f"--{config_uuid}")}
        prune(owned, f"orphan {DB_SHARING} doc", self._remove)
        withdraw = lambda site, db, doc_id: _withdraw(site, db, doc_id, copies[doc_id])  # noqa: E731
        prune(copies, f"orphan copy of a {DB_SHARING} doc", withdraw)

    def _remove_expired_keys(self, report: Report) -> None:
        """Idempotency records past their time: their keys are free again already."""
        try:
            removed = self.store.remove_expired_keys()
        except FAILURES as exc:
            report.errors.append({"kind": "expired idempotency keys", "error": str(exc)})
            return
        if removed:
            finding = {"kind": "expired idempotency keys", "count": removed}
            report.found.append(finding)
            report.repaired.append({**finding, "action": "removed them"})

    def _report_unsealed(self, report: Report) -> None:
        """Records the broker did not write: refused everywhere, left for an admin to judge."""
        for doc_type in ("share", "database"):
            for doc_id in self.store.unsealed(doc_type):
                finding = {"kind": "unsealed record", "record": doc_id}
                report.found.append(finding)
                report.errors.append({**finding, "error": "not written by this broker: refused"})

    def _remove_forged_branches(self, report: Report) -> None:
        """A pass of the branch watch, so a reconcile also catches what it missed."""
        try:
            removals = self.forged_branches()
        except FAILURES as exc:
            report.errors.append({"kind": "forged branch", "error": str(exc)})
            return
        for removal in removals:
            entry = {"kind": "forged branch", **removal.__dict__}
            report.found.append(entry)
            report.repaired.append({**entry, "action": "removed it"})
            RECONCILE_REPAIRS.labels(entry["kind"]).inc()

    def _prune(self, report: Report, entries: dict[str, str], needed, finding, remove) -> None:
        """Remove every entry (key -> share id) that `needed(key, share)` says no share needs."""
        shares = self.store.get_shares(set(entries.values()))
        for key, share_id in entries.items():
            if not needed(key, shares.get(share_id)):
                self._attempt(report, finding(key), lambda k=key: remove(k))

    def _gone_databases(self, share: Share) -> list[str]:
        """The share's databases that no longer exist in CouchDB, by place."""
        found = self.store.get_databases({share.owner, share.recipient})
        registry = self.shares.registry
        try:
            return [db.place for db in found.values() if not registry.exists(db)]
        except FAILURES:
            return []  # a server that does not answer: the error is reported as it is

    def _restart(self, share: Share, doc_id: str, rewritten: bool) -> str:
        """Restart a crashing replication whose cause may be repaired now, rather than wait
        out CouchDB's backoff; a repair that rewrote its doc restarted it already."""
        if rewritten:
            return "restarted by the repair"
        restart_replication(self.shares.home(share).couch, doc_id)
        return "restarted it"

    def _revoke(self, share: Share) -> str:
        self.shares.revoke(share, purge=False, actor=ACTOR)
        return "revoked the share"

    def _ours(self, docs: list[dict]) -> dict[str, str]:
        """Doc id -> share id, for the docs labelled as this broker's."""
        ours = {}
        for doc in docs:
            label = doc.get("sharing_broker")
            if isinstance(label, dict) and label.get("broker") == self.store.db:
                ours[doc["_id"]] = str(label.get("share_id"))
        return ours

    @staticmethod
    def _remove(site: Site, db: str, doc_id: str) -> str:
        ensure_absent(site.couch, db, doc_id)
        return "removed it"


def reconcile_every(seconds: float, reconciler, stop: threading.Event) -> None:
    """Run `reconciler()` then wait `seconds`, until `stop` is set; failures are logged."""
    while not stop.wait(seconds):
        try:
            report = reconciler().run()
        except (CouchError, CouchUnavailable) as exc:
            log.warning("periodic reconcile failed: %s", exc)
            continue
        if report.repaired or report.errors:
            log.info(
                "periodic reconcile: %d repaired, %d errors",
                len(report.repaired),
                len(report.errors),
            )


def _withdraw(site: Site, db: str, doc_id: str, share_id: str) -> str:
    withdraw_doc(site.couch, db, doc_id, share_id)
    return "deleted it"


def _user_exists(site: Site, name: str) -> bool:
    try:
        site.couch.get(USERS_DB, user_doc_id(name))
        return True
    except NotFound:
        return False


def _on(site: Site, finding: dict) -> dict:
    """A finding about a server-wide database, naming the server if it is not `default`."""
    return finding if site.name == DEFAULT_SERVER else {**finding, "server": site.name}


def _live(share: Share | None) -> bool:
    return share is not None and share.current_status in LIVE


def _removed(_changed: bool) -> str:
    return "removed it"
