"""Provisioning: invite, accept or decline; a failed provisioning is rolled back."""

from service.sharing.core.errors import PreconditionFailed, SharingError
from service.sharing.core.model import (
    Access,
    Database,
    Operation,
    Selection,
    Share,
    Status,
    now_iso,
)
from service.sharing.lifecycle.base import COUCH_FAILURES, Trail, by_uuid, log, race_is_conflict
from service.sharing.lifecycle.placement import Placement


class Provisioning(Placement):
    """Creates shares and provisions them on consent."""

    def create(
        self,
        owner: str,
        recipient: str,
        access: Access,
        selection: Selection,
        actor: str,
        accepted: bool,
    ) -> tuple[Share, dict[str, Database]]:
        """Invite the recipient (`pending`), or provision at once when `accepted`.

        Return the share, and its parties' databases for the answer.
        """
        owner_db, recipient_db, current = self._checked_new_pair(owner, recipient)
        selection = self._checked_selection(owner_db, recipient_db, selection)
        claim = self.store.open_pair(owner, recipient, current)
        share = Share.new(owner, recipient, access, selection, claim["share_id"])
        if accepted:
            share.status = Status.PROVISIONING
            share.operation = Operation.toward("provision", access, selection)
        else:
            share.expires_at = now_iso(self.invitation_ttl_seconds)
        self.store.claim_and_save(share, claim)
        with self._audit(share, "create", actor) as trail:
            if accepted:
                trail.on_behalf = ("accept",)  # the recipient's, recorded with the create's
                self._provision(share, None, (owner_db, recipient_db), trail)
        return share, by_uuid(owner_db, recipient_db)

    @race_is_conflict
    def accept(self, share: Share, actor: str) -> tuple[Share, dict[str, Database]]:
        """The recipient agrees: write the parts and start replicating.

        Return the share, and its parties' databases for the answer.
        """
        self._expire_if_due(share, actor)
        with self._audit(share, "accept", actor) as trail:
            self._require(share, Status.PENDING, "accepted")
            dbs = self.registry.parties(share.owner, share.recipient, undisputed=True)
            self._read_confirmed(dbs, [])
            share.status = Status.PROVISIONING
            share.operation = Operation.toward("provision", share.access, share.selection)
            self._save_transition(share)
            self._provision(share, Status.PENDING, dbs, trail)
        return share, by_uuid(*dbs)

    @race_is_conflict
    def decline(self, share: Share, actor: str) -> Share:
        """The recipient refuses the invitation; nothing was written, nothing is."""
        self._expire_if_due(share, actor)
        with self._audit(share, "decline", actor) as trail:
            self._require(share, Status.PENDING, "declined")
            self._end(share, Status.DECLINED, trail)
        return share

    def _provision(
        self,
        share: Share,
        roll_back_to: Status | None,
        dbs: tuple[Database, Database],
        trail: "Trail",
    ) -> None:
        try:  # a first provisioning: nothing to reuse, the credential is new
            self._converge(share, share.access, share.selection, dbs, rotate=True)
        except (*COUCH_FAILURES, SharingError):
            self._roll_back_provision(share, roll_back_to)
            raise
        self._finish(share, Status.ACTIVE, trail)

    def _roll_back_provision(self, share: Share, back_to: Status | None) -> None:
        """Remove what was written; then forget the share, or return it to `back_to`."""
        try:
            share.operation = Operation.toward("roll back", None, None)
            self._converge(share, None, None)
            if back_to is None:
                self.store.delete_share(share)
                self.store.release_pair(share)
            else:
                self._finish(share, back_to)
        except (*COUCH_FAILURES, PreconditionFailed):
            log.warning(
                "share %s: provisioning failed and could not be rolled back; DELETE it to finish",
                share.id,
            )
