"""Wires the sharing domain to the CouchDB servers in the settings."""

from collections.abc import Callable
from dataclasses import dataclass

from service.config import CONTINUOUS, DEFAULT_SERVER, ON_CHANGE, ServerSettings, Settings
from service.couch import CouchClient
from service.sharing.core.identity import Identity
from service.sharing.core.model import Status
from service.sharing.core.policy import Policy
from service.sharing.core.registry import Registry
from service.sharing.core.seal import Seal
from service.sharing.core.sites import Site, Sites
from service.sharing.core.store import StateStore
from service.sharing.lifecycle.reconcile import Reconciler
from service.sharing.lifecycle.shares import ShareService
from service.sharing.placing.access import DatabaseAccess
from service.sharing.watching.branches import BranchWatch
from service.sharing.watching.checkpoints import Checkpoints
from service.sharing.watching.feed import EventFeed
from service.sharing.watching.replications import Replications
from service.sharing.watching.rule_follow import RuleFollow
from service.sharing.watching.runs import REPLICATOR_CHECKPOINT_ID, RunOnChange, in_a_thread
from service.sharing.watching.states import StateRecorder
from service.sharing.watching.updates import DB_UPDATES_CHECKPOINT_ID, DatabaseUpdates
from service.sharing.watching.webhooks import Webhooks


@dataclass(frozen=True)
class Broker:
    """Everything a request handler needs, built once per process."""

    sites: Sites
    store: StateStore
    registry: Registry
    shares: ShareService
    policy: Policy
    # On-change mode: the most one-shot runs at once a server; none in continuous mode.
    feed: EventFeed
    webhooks: Webhooks
    max_runs: int | None = None
    operation_grace_seconds: float = 60.0

    @property
    def couch(self) -> CouchClient:
        """The `default` server's client: it holds the state database."""
        return self.sites.default.couch

    def reconciler(self) -> Reconciler:
        return Reconciler(
            self.sites,
            self.store,
            self.shares,
            self.branch_watch().run,
            self.operation_grace_seconds,
        )

    def followers(self) -> list:
        """The passes of the followers loop, in order; they share one index of the
        replications. In on-change mode the runs go first, so a write starts its run
        before the slower passes."""
        replications = self.replications()
        if self.max_runs is None:
            return [self.branch_watch(replications), self.rule_follow(), self.state_recorder()]
        runs = self.on_change_runs(replications)
        recorder = self.state_recorder(runs.states_on)
        return [runs, self.branch_watch(replications), self.rule_follow(), recorder]

    def on_change_runs(
        self, replications: Replications, launch: Callable = in_a_thread
    ) -> RunOnChange:
        """The runs of on-change mode over `replications`; `launch(work)` runs a worker."""
        positions = Checkpoints(self.store.couch, self.store.db, REPLICATOR_CHECKPOINT_ID)
        restore = self.restore_replications
        return RunOnChange(
            self.sites, replications, self.max_runs, restore, positions, launch=launch
        )

    def restore_replications(self, share_id: str) -> bool:
        """Write the replicator docs of a share, active and with no change in progress, as
        its record wants them; say whether it was such a share."""
        share = self.store.get_share(share_id)
        if share.status is not Status.ACTIVE or share.operation is not None:
            return False
        self.shares.refresh_scope(share)
        return True

    def replications(self) -> Replications:
        return Replications(self.sites, self.store.db)

    def branch_watch(self, replications: Replications | None = None) -> BranchWatch:
        return BranchWatch(self.sites, self.store, replications or self.replications())

    def rule_follow(self) -> RuleFollow:
        return RuleFollow(self.store, self.shares)

    def state_recorder(self, runs: Callable[[str], dict[str, dict]] | None = None) -> StateRecorder:
        on_change = self.max_runs is not None
        return StateRecorder(self.sites, self.store, on_change=on_change, runs=runs)

    def database_updates(self) -> DatabaseUpdates:
        checkpoints = Checkpoints(self.store.couch, self.store.db, DB_UPDATES_CHECKPOINT_ID)
        return DatabaseUpdates(self.sites, checkpoints)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Broker":
        default = _client(settings.servers[0], settings)
        sites = Sites([_site(server, settings, default) for server in settings.servers])
        store = StateStore(default, settings.state_db, Seal(settings.record_key))
        registry = Registry(sites, store)
        shares = ShareService(
            sites,
            store,
            registry,
            settings.invitation_ttl_seconds,
            continuous=settings.replication_mode == CONTINUOUS,
        )
        on_change = settings.replication_mode == ON_CHANGE
        max_runs = settings.max_runs if on_change else None
        bounds = (settings.max_pending_invitations, settings.max_live_shares)
        policy = Policy(sites, registry, *bounds)
        grace = settings.operation_grace_seconds
        # One follower request must end well inside the read timeout.
        follow_seconds = max(1.0, settings.couch_read_timeout / 2)
        feed = EventFeed(store, follow_seconds, settings.max_waiting, settings.longest_wait_seconds)
        webhooks = Webhooks(store, feed, settings.record_key)
        return cls(sites, store, registry, shares, policy, feed, webhooks, max_runs, grace)


def _client(server: ServerSettings, settings: Settings) -> CouchClient:
    return CouchClient(
        server.url,
        server.user,
        server.password,
        timeout=settings.couch_timeout,
        server=server.name,
    )


def _site(server: ServerSettings, settings: Settings, default: CouchClient) -> Site:
    """A server's site."""
    couch = default if server.name == DEFAULT_SERVER else _client(server, settings)
    access = DatabaseAccess(couch, settings.state_db)
    return Site(server.name, couch, server.replication_url, access, Identity(couch))
