"""Wires the sharing domain to one CouchDB server from the settings."""

from dataclasses import dataclass

from service.config import Settings
from service.couch import CouchClient
from service.sharing.access import Editors
from service.sharing.branches import BranchWatch
from service.sharing.credentials import DatabaseLocks, SecurityEditor
from service.sharing.follow import RuleFollow
from service.sharing.guard import GuardEditor
from service.sharing.identity import Identity
from service.sharing.lifecycle import ShareService
from service.sharing.policy import Policy
from service.sharing.reconcile import Reconciler
from service.sharing.registry import Registry
from service.sharing.seal import Seal
from service.sharing.states import StateRecorder
from service.sharing.store import StateStore


@dataclass(frozen=True)
class Broker:
    """Everything a request handler needs, built once per process."""

    couch: CouchClient
    store: StateStore
    registry: Registry
    shares: ShareService
    identity: Identity
    policy: Policy

    def reconciler(self) -> Reconciler:
        return Reconciler(self.couch, self.store, self.shares)

    def branch_watch(self) -> BranchWatch:
        return BranchWatch(self.couch, self.store)

    def rule_follow(self) -> RuleFollow:
        return RuleFollow(self.couch, self.store, self.shares)

    def state_recorder(self) -> StateRecorder:
        return StateRecorder(self.couch, self.store)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Broker":
        couch = CouchClient(
            settings.couchdb_url,
            settings.couchdb_user,
            settings.couchdb_password,
            timeout=settings.couch_timeout,
        )
        store = StateStore(couch, settings.state_db, Seal(settings.record_key))
        registry = Registry(couch, store)
        locks = DatabaseLocks(couch, settings.state_db)
        editors = Editors(
            SecurityEditor(couch, locks), GuardEditor(couch, locks, settings.state_db), locks
        )
        shares = ShareService(
            couch,
            store,
            registry,
            editors,
            settings.replication_url,
            settings.invitation_ttl_seconds,
        )
        identity = Identity(couch)
        return cls(couch, store, registry, shares, identity, Policy(identity, registry))
