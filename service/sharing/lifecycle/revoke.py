"""Revoking: stop replication, remove `db_sharing`, withdraw the recipient's copies if asked."""

from service.sharing.core.errors import ConflictError
from service.sharing.core.model import Database, Direction, Operation, Share, Status
from service.sharing.crossing.selectors import Scope, share_selector
from service.sharing.lifecycle.base import by_uuid, race_is_conflict
from service.sharing.lifecycle.placement import Placement
from service.sharing.placing.withdraw import withdraw_shared_docs


class Revoking(Placement):
    """Revokes shares; revoking again finishes a revoke that stopped half-way."""

    @race_is_conflict
    def revoke(
        self, share: Share, purge: bool, actor: str, role: str = ""
    ) -> tuple[Share, dict[str, Database] | None]:
        """Stop replication, remove `db_sharing`, and withdraw the recipient's copies if
        asked (`purge`): they leave the recipient's database and devices.

        The owner revokes, the recipient leaves (`role` says which the actor is); an
        invitation is withdrawn. Revoking again
        finishes a revoke that stopped half-way. Return the share, and its parties' databases
        for the answer if they were read.
        """
        self._expire_if_due(share, actor)
        if share.status is Status.REVOKED:
            return share, None
        with self._audit(share, "revoke", actor, role) as trail:
            if share.status is Status.PENDING:
                self._end(share, Status.REVOKED, trail)
                return share, None
            if share.status not in (Status.PROVISIONING, Status.ACTIVE, Status.REVOKING):
                raise ConflictError(f"a share that is {share.status} cannot be revoked")
            if not (share.operation and share.operation.name == "revoke"):
                share.status = Status.REVOKING
                share.operation = Operation("revoke", None, None, purge=purge)
                self._save_transition(share)
            elif purge and not share.operation.purge:
                share.operation.purge = True
                self.store.save_share(share)
            dbs = self.registry.parties(share.owner, share.recipient)
            self._converge(share, None, None, dbs)
            with self._progress_kept(share):
                self._withdraw_from_recipient(share, dbs[1])
            if share.operation.purge:  # the feed tells the parties the copies went too
                self._log_event(trail.event("ok", action="purge"))
            self._end(share, Status.REVOKED, trail)
        return share, by_uuid(*dbs)

    def _withdraw_from_recipient(self, share: Share, recipient_db: Database) -> None:
        """Always withdraw the recipient's `db_sharing` copy; the shared docs if asked."""
        done = share.operation.done
        self._withdraw_db_sharing(share, recipient_db)
        if share.operation.purge and "purge:shared-docs" not in done:
            # Without the rules: an item that matched once and no longer does goes too.
            selector = share_selector(
                share.owner,
                share.recipient,
                share.access,
                Scope(share.collections),
                Direction.OWNER_TO_RECIPIENT,
            )
            couch = self._couch(recipient_db)
            withdraw_shared_docs(couch, recipient_db.database, share.owner, selector, share.id)
            share.operation.done.append("purge:shared-docs")
