"""Changing a share: access, collections, rules and credentials; previews of a change."""

from service.couch import NotFound
from service.sharing.core.errors import ConflictError, PreconditionFailed, SharingError
from service.sharing.core.model import Access, Direction, Operation, Selection, Share, Status
from service.sharing.crossing.preview import Preview, preview
from service.sharing.crossing.rules import parse_rules
from service.sharing.crossing.selectors import share_selector
from service.sharing.lifecycle.base import COUCH_FAILURES, log, race_is_conflict
from service.sharing.lifecycle.placement import Placement

UNCHANGED = object()


class Changing(Placement):
    """Changes active or pending shares; a failed change is undone."""

    def patch(
        self,
        share: Share,
        etag: str,
        access: Access | None,
        collections: object,
        rules: object,
        actor: str,
    ) -> Share:
        """Change access, collections or rules; replicator docs, guards and `db_sharing` follow.

        `collections` and `rules` are `UNCHANGED` when not given.
        """
        if rules is not UNCHANGED and rules is not None:
            parse_rules(rules)  # malformed rules are 422, whatever version the share is at
        if etag != share.etag:
            raise PreconditionFailed("the share changed since it was read; read it again")
        self._expire_if_due(share, actor)
        with self._audit(share, "patch", actor) as trail:
            if share.status not in (Status.PENDING, Status.ACTIVE):
                raise ConflictError(f"a share that is {share.status} cannot change")
            new_access, selection = self._patched(share, access, collections, rules)
            if share.status is Status.ACTIVE:
                self._change_parts(share, new_access, selection)
            share.adopt(new_access, selection)
            self._finish(share, share.status, trail)
        return share

    def preview(
        self,
        share: Share,
        access: Access | None = None,
        collections: object = UNCHANGED,
        rules: object = UNCHANGED,
    ) -> Preview:
        """What the share carries to the recipient, or would carry after such a patch."""
        access, selection = self._patched(share, access, collections, rules)
        dbs = self.registry.parties(share.owner, share.recipient)
        return self._preview(share, access, selection, dbs)

    def preview_new(
        self, owner: str, recipient: str, access: Access, selection: Selection
    ) -> Preview:
        """What a share made with these settings would carry; nothing is written."""
        dbs = self._checked_parties(owner, recipient)
        selection = self._checked_selection(*dbs, selection)
        return self._preview(Share.new(owner, recipient, access, selection), access, selection, dbs)

    def _patched(
        self, share: Share, access: Access | None, collections: object, rules: object
    ) -> tuple[Access, Selection]:
        """The access and selection a patch asks for, checked."""
        selection = Selection(
            share.collections if collections is UNCHANGED else collections,
            share.rules if rules is UNCHANGED else rules,
        )
        if selection != share.selection:
            dbs = self.registry.parties(share.owner, share.recipient)
            selection = self._checked_selection(*dbs, selection)
        return access or share.access, selection

    def _preview(self, share: Share, access: Access, selection: Selection, dbs) -> Preview:
        try:
            scope = self._scope(selection, access, dbs[0])
            selector = share_selector(
                share.owner, share.recipient, access, scope, Direction.OWNER_TO_RECIPIENT
            )
            return preview(self._couch(dbs[0]), dbs[0].database, selector)
        except NotFound:  # a state the broker knows: answered as the other operations do
            detail = f"the database of {share.owner} no longer exists"
            raise ConflictError(detail, "owner") from None

    @race_is_conflict
    def rotate(self, share: Share, actor: str) -> Share:
        """Give the share user a new password and the replicator docs with it."""
        with self._audit(share, "rotate credentials", actor) as trail:
            if share.status is not Status.ACTIVE:
                raise ConflictError(f"a share that is {share.status} has no credentials")
            share.operation = Operation.toward("rotate", share.access, share.selection)
            self._save_transition(share)
            try:
                dbs = self.registry.parties(share.owner, share.recipient)
                self._stop_replications(share, self.registry.site(dbs[0]))
                self._converge(share, share.access, share.selection, dbs, rotate=True)
            except COUCH_FAILURES:
                log.warning("share %s: rotation stopped half-way; reconcile finishes it", share.id)
                raise
            self._finish(share, Status.ACTIVE, trail)
        return share

    def _change_parts(self, share: Share, access: Access, selection: Selection):
        old = (share.access, share.selection)
        share.operation = Operation.toward("patch", access, selection)
        self.store.save_share(share)
        try:
            self._converge(share, access, selection)
            self._withdraw_write_permission(share, access)
        except (*COUCH_FAILURES, SharingError):
            self._roll_back_patch(share, *old)
            raise

    def _roll_back_patch(self, share: Share, access: Access, selection: Selection):
        try:
            share.operation = Operation.toward("roll back", access, selection)
            self._converge(share, access, selection)
            self._finish(share, Status.ACTIVE)
        except (*COUCH_FAILURES, PreconditionFailed):
            log.warning("share %s: change failed and could not be undone", share.id)

    def _withdraw_write_permission(self, share: Share, access: Access | None) -> None:
        """Going from read-write to read-only: delete the recipient's `db_sharing` copy,
        with a tombstone that reaches their devices.

        The owner's deletion of it cannot be trusted to arrive: the recipient's guard now
        refuses `db_sharing`, and may do so before the replication carries the tombstone.
        """
        if share.access is Access.READ_WRITE and access is Access.READ:
            recipient_db = self.registry.parties(share.owner, share.recipient)[1]
            self._withdraw_db_sharing(share, recipient_db)
