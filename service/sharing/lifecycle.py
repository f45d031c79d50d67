"""The share lifecycle: create, change and revoke, each recorded so a crash can be finished.

Before acting, an operation is written into the share record with its target; every part
written or removed is added to its `done` list. A failed create is rolled back; a failed
change is brought back to what the share was; a failed revoke is finished by revoking again.
Whatever cannot be undone stays visible in the record's `operation`.
"""

import logging

from service.couch import CouchClient, CouchError, CouchUnavailable
from service.sharing.errors import ConflictError, InvalidRequest, PreconditionFailed
from service.sharing.model import Access, Database, Direction, Operation, Share, Status, now_iso
from service.sharing.parts import Target, converge, wanted_parts
from service.sharing.purge import purge_doc, purge_shared_docs
from service.sharing.registry import Registry
from service.sharing.replicator import Endpoint
from service.sharing.scan import docs_with_prefix
from service.sharing.selectors import SHARED_PREFIXES, share_selector
from service.sharing.store import StateStore

log = logging.getLogger(__name__)
COUCH_FAILURES = (CouchError, CouchUnavailable)
UNCHANGED = object()


class ShareService:
    """Creates, changes and revokes shares."""

    def __init__(
        self, couch: CouchClient, store: StateStore, registry: Registry, endpoint: Endpoint
    ):
        self.couch = couch
        self.store = store
        self.registry = registry
        self.endpoint = endpoint

    def create(
        self, owner: str, recipient: str, access: Access, collections: list[str] | None
    ) -> Share:
        """Create a share and provision it at once: it ends `active`."""
        owner_db = self.registry.get(owner, "owner")
        recipient_db = self.registry.get(recipient, "recipient")
        if owner == recipient or owner_db.database == recipient_db.database:
            raise InvalidRequest("owner and recipient must be different databases", "recipient")
        collections = self._checked_collections(owner_db, collections)
        share = Share.new(owner, recipient, access, collections)
        share.operation = Operation("provision", access, collections)
        self.store.claim_pair(share)
        try:
            self.store.save_share(share)
        except Exception:
            self.store.release_pair(share)
            raise
        try:
            self._converge(share, access, collections)
        except COUCH_FAILURES:
            self._roll_back_create(share)
            raise
        return self._finish(share, Status.ACTIVE)

    def patch(
        self, share_id: str, etag: str, access: Access | None, collections: object = UNCHANGED
    ) -> Share:
        """Change access or collections; the replicator docs and `db_sharing` follow."""
        share = self.store.get_share(share_id)
        if etag != share.etag:
            raise PreconditionFailed("the share changed since it was read; read it again")
        if share.status is not Status.ACTIVE:
            raise ConflictError(f"a share that is {share.status} cannot change")
        new_access = access or share.access
        if collections is UNCHANGED:
            new_collections = share.collections
        else:
            owner_db = self.registry.get(share.owner, "owner")
            new_collections = self._checked_collections(owner_db, collections)
        old = (share.access, share.collections)
        share.operation = Operation("patch", new_access, new_collections)
        self.store.save_share(share)
        try:
            self._converge(share, new_access, new_collections)
        except COUCH_FAILURES:
            self._roll_back_patch(share, *old)
            raise
        share.access, share.collections = new_access, new_collections
        return self._finish(share, Status.ACTIVE)

    def revoke(self, share_id: str, purge: bool) -> Share:
        """Stop replication, remove `db_sharing`, and purge the recipient's copies if asked.

        Revoking again finishes a revoke that stopped half-way.
        """
        share = self.store.get_share(share_id)
        if share.status is Status.REVOKED:
            return share
        resuming = share.operation is not None and share.operation.name == "revoke"
        if not resuming:
            share.status = Status.REVOKING
            share.operation = Operation("revoke", None, None, purge=purge)
            self.store.save_share(share)
        elif purge and not share.operation.purge:
            share.operation.purge = True
            self.store.save_share(share)
        self._converge(share, None, None)
        self._purge_recipient(share)
        share = self._finish(share, Status.REVOKED)
        self.store.release_pair(share)
        return share

    def _converge(self, share: Share, access: Access | None, collections: list[str] | None):
        owner_db = self.registry.get(share.owner, "owner")
        recipient_db = self.registry.get(share.recipient, "recipient")
        reverse = collections
        if access is Access.READ_WRITE and collections is None:
            reverse = self._own_collection_ids(owner_db)
        target = Target(access, collections, owner_db.database, recipient_db.database, reverse)
        parts = wanted_parts(share, target, self.endpoint)
        converge(self.couch, parts, share.operation.done, lambda name: self._record(share, name))

    def _record(self, share: Share, step: str) -> None:
        share.operation.done.append(step)
        self.store.save_share(share)

    def _purge_recipient(self, share: Share) -> None:
        """Always withdraw the recipient's `db_sharing` copy; purge shared docs if asked."""
        recipient_db = self.registry.get(share.recipient, "recipient").database
        done = share.operation.done
        if "purge:db_sharing" not in done:
            purge_doc(self.couch, recipient_db, share.db_sharing_doc_id)
            self._record(share, "purge:db_sharing")
        if share.operation.purge and "purge:shared-docs" not in done:
            selector = share_selector(
                share.owner,
                share.recipient,
                share.access,
                share.collections,
                Direction.OWNER_TO_RECIPIENT,
            )
            purge_shared_docs(self.couch, recipient_db, share.owner, selector)
            self._record(share, "purge:shared-docs")

    def _finish(self, share: Share, status: Status) -> Share:
        share.status = status
        share.operation = None
        share.updated_at = now_iso()
        return self.store.save_share(share)

    def _roll_back_create(self, share: Share) -> None:
        try:
            share.operation = Operation("roll back", None, None)
            self._converge(share, None, None)
            self.store.delete_share(share)
            self.store.release_pair(share)
        except (*COUCH_FAILURES, PreconditionFailed):
            log.warning(
                "share %s: create failed and could not be rolled back; DELETE it to finish",
                share.id,
            )

    def _roll_back_patch(self, share: Share, access: Access, collections: list[str] | None):
        try:
            share.operation = Operation("roll back", access, collections)
            self._converge(share, access, collections)
            self._finish(share, Status.ACTIVE)
        except (*COUCH_FAILURES, PreconditionFailed):
            log.warning("share %s: change failed and could not be undone", share.id)

    def _checked_collections(self, owner_db: Database, collections: list[str] | None):
        """Keep the order, drop repeats, and refuse ids that are not the owner's collections."""
        if collections is None:
            return None
        unique = list(dict.fromkeys(collections))
        keys = [f"{SHARED_PREFIXES['collection']}{c}" for c in unique]
        rows = self.couch.post(
            owner_db.database, "_all_docs", json={"keys": keys}, params={"include_docs": "true"}
        )["rows"]
        unknown = [
            cid
            for cid, row in zip(unique, rows, strict=True)
            if not _is_own_collection(row.get("doc"), owner_db.config_uuid)
        ]
        if unknown:
            raise InvalidRequest(
                f"not collections of the owner's database: {', '.join(unknown)}", "collections"
            )
        return unique

    def _own_collection_ids(self, owner_db: Database) -> list[str]:
        prefix = SHARED_PREFIXES["collection"]
        return [
            doc["_id"].removeprefix(prefix)
            for doc in docs_with_prefix(self.couch, owner_db.database, prefix)
            if _is_own_collection(doc, owner_db.config_uuid)
        ]


def _is_own_collection(doc: dict | None, config_uuid: str) -> bool:
    if not doc or doc.get("type") != "collection":
        return False
    return (doc.get("data") or {}).get("config_uuid") == config_uuid
