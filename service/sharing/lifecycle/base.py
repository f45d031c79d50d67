"""The shared core of the share operations: audit, status transitions, the record."""

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from service.couch import CouchClient, CouchError, CouchUnavailable
from service.sharing.core.errors import ConflictError, PreconditionFailed, SharingError
from service.sharing.core.model import Database, Event, Share, Status, actor_role, now_iso
from service.sharing.core.registry import Registry
from service.sharing.core.sites import Site, Sites
from service.sharing.core.store import StateStore

log = logging.getLogger(__name__)
COUCH_FAILURES = (CouchError, CouchUnavailable)
RACE_LOST = "another request changed this share at the same time; read it again"


P = ParamSpec("P")
R = TypeVar("R")


def race_is_conflict(operation: Callable[P, R]) -> Callable[P, R]:
    """For an operation that takes no `If-Match`: losing the record to another request is a
    conflict (409), not a failed precondition (412) that the caller never set."""

    @functools.wraps(operation)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return operation(*args, **kwargs)
        except PreconditionFailed:
            raise ConflictError(RACE_LOST) from None

    return run


class LifecycleBase:
    """The state every operation family works on, and how an operation is recorded and ends."""

    def __init__(
        self,
        sites: Sites,
        store: StateStore,
        registry: Registry,
        invitation_ttl_seconds: int,
        continuous: bool = True,
    ):
        self.sites = sites
        self.store = store
        self.registry = registry
        self.invitation_ttl_seconds = invitation_ttl_seconds
        self.continuous = continuous  # else one-shot runs, started on change (`runs`)
        self.replication_urls = {site.name: site.replication_url for site in sites}

    def home(self, share: Share) -> Site:
        """The server of the share's owner, where its replications run."""
        return self.registry.site(self.registry.get(share.owner, "owner"))

    def _couch(self, database: Database) -> CouchClient:
        return self.registry.site(database).couch

    def events(self, share_id: str) -> list[Event]:
        return self.store.events(share_id)

    def _expire_if_due(self, share: Share, actor: str) -> None:
        """Record an invitation past its time as expired."""
        if share.status is Status.PENDING and share.current_status is Status.EXPIRED:
            with self._audit(share, "expire", actor) as trail:
                self._end(share, Status.EXPIRED, trail)

    def _require(self, share: Share, status: Status, verb: str) -> None:
        if share.status is not status:
            raise ConflictError(f"a share that is {share.status} cannot be {verb}")

    def _save_transition(self, share: Share) -> None:
        """Save a change of status; losing a race to another request is a conflict."""
        try:
            self.store.save_share(share)
        except PreconditionFailed:
            raise ConflictError(RACE_LOST) from None

    def _end(self, share: Share, status: Status, trail: "Trail") -> None:
        """A final status: the pair is free for a new share."""
        self._finish(share, status, trail)
        self.store.release_pair(share)

    @contextmanager
    def _audit(self, share: Share, action: str, actor: str, role: str = "") -> Iterator["Trail"]:
        """Record the action's outcome in the audit trail, whatever it is: with the share's
        final record when the block ends it well (`_finish` with the trail), else alone.
        `role` is the actor's, where the action does not say it (a revoke)."""
        role = actor_role(action, actor, role)
        trail = Trail(share.id, action, actor, share.owner, share.recipient, role)
        try:
            yield trail
        except SharingError as exc:
            self._log_event(trail.event(f"refused: {exc.detail}"))
            raise
        except COUCH_FAILURES:
            self._log_event(trail.event("failed: CouchDB error"))
            raise
        if not trail.recorded:
            self._log_event(trail.event("ok"))

    def _log_event(self, event: Event) -> None:
        try:
            self.store.add_event(event)
        except COUCH_FAILURES:
            log.warning("share %s: event %s not recorded", event.share_id, event.action)

    def _finish(self, share: Share, status: Status, trail: "Trail | None" = None) -> Share:
        """Settle on `status`; only an invitation keeps its expiry. With the operation's
        `trail`, its "ok" event is written in the same request: the operation ends here."""
        share.status = status
        share.operation = None
        if status not in (Status.PENDING, Status.EXPIRED):
            share.expires_at = None
        share.updated_at = now_iso()
        if trail is None:
            return self.store.save_share(share)
        self.store.save_share(share, *trail.outcomes("ok"))
        trail.recorded = True
        return share


@dataclass
class Trail:
    """The audit trail of one operation under way: who does what to which share."""

    share_id: str
    action: str
    actor: str
    owner: str = ""
    recipient: str = ""
    role: str = ""
    recorded: bool = False  # its outcome is written
    on_behalf: tuple[str, ...] = ()  # further actions it takes for the other party

    def outcomes(self, outcome: str) -> list[Event]:
        """The operation's `outcome`, then the same for each action taken on behalf."""
        return [self.event(outcome)] + [self.event(outcome, a) for a in self.on_behalf]

    def event(self, outcome: str, action: str = "") -> Event:
        """The outcome of this operation, or of one step of it named `action`."""
        return Event(
            self.share_id,
            action or self.action,
            self.actor,
            outcome,
            owner=self.owner,
            recipient=self.recipient,
            role=self.role,
        )


def by_uuid(*dbs: Database) -> dict[str, Database]:
    return {db.config_uuid: db for db in dbs}
