"""Recovery: finish what a crash left, and repair what drifted (reconcile calls these)."""

from service.sharing.core.model import Share, Status
from service.sharing.lifecycle.change import Changing
from service.sharing.lifecycle.revoke import Revoking
from service.sharing.placing.parts import (
    ACCESS_OWNER,
    ACCESS_RECIPIENT,
    O2R,
    R2O,
    SHARE_USER,
    SHARE_USER_AWAY,
    apply,
)


class Recovering(Revoking, Changing):
    """Finishes interrupted operations and repairs active shares."""

    def resume(self, share: Share, actor: str) -> str:
        """Finish or roll back an operation a crash left in the record; say which."""
        operation = share.operation
        with self._audit(share, "resume", actor) as trail:
            if share.status is Status.REVOKING:
                self.revoke(share, purge=bool(operation and operation.purge), actor=actor)
                return "finished the revoke"
            if operation is None:
                return "nothing to do"
            if share.status is Status.PROVISIONING and operation.name == "roll back":
                share.status = Status.REVOKING
                self.revoke(share, purge=False, actor=actor)
                return "rolled back the provisioning"
            if share.status is Status.PROVISIONING:
                self._converge(share, share.access, share.selection)
                self._finish(share, Status.ACTIVE, trail)
                return "finished the provisioning"
            # An active share in the middle of a change, a rotation, or undoing a change.
            rotating = operation.name == "rotate"
            dbs = self.registry.parties(share.owner, share.recipient)
            if rotating:
                operation.done.clear()  # a new password: every credential step again
                self._stop_replications(share, self.registry.site(dbs[0]))
            self._converge(share, operation.access, operation.selection, dbs, rotate=rotating)
            self._withdraw_write_permission(share, operation.access)
            share.adopt(operation.access, operation.selection)
            self._finish(share, Status.ACTIVE, trail)
            return f"finished the {operation.name}"

    def repair(self, share: Share) -> list[str]:
        """Rewrite the parts of an active share that are missing, changed or failed.

        A share user whose password no longer matches its replicator docs gets a new one.
        One whose logins carry its roles loses what the earlier layout kept for it.
        """
        dbs = self.registry.parties(share.owner, share.recipient)
        parts = self._parts(share, share.access, share.selection, dbs)
        repaired = [name for name, part in parts.items() if self._repair_part(part)]
        basic = parts[O2R].body["source"]["auth"]["basic"]  # the password replication uses
        name, password = basic["username"], basic["password"]
        sites = {db.server: self.registry.site(db) for db in dbs}
        in_force = {s: self._roles_in_force(site, name, password) for s, site in sites.items()}
        if None in in_force.values():
            self._stop_replications(share, self.registry.site(dbs[0]))
            parts = self._parts(share, share.access, share.selection, dbs, rotate=True)
            for part_name in (SHARE_USER, SHARE_USER_AWAY, O2R, R2O):
                if part_name in parts and parts[part_name].body is not None:
                    apply(self.sites[parts[part_name].server], parts[part_name])
            return [*repaired, "credentials"]
        for part_name, db in zip((ACCESS_OWNER, ACCESS_RECIPIENT), dbs, strict=True):
            settled = sites[db.server].access.settle(db.database, name, in_force[db.server])
            if settled and part_name not in repaired:
                repaired.append(part_name)
        return repaired

    def refresh_scope(self, share: Share) -> list[str]:
        """Rewrite the share users' scopes and the replicator docs that differ from what
        the share wants: rule-made id lists that moved, a replicator doc whose older sibling
        won."""
        parts = self._parts(share, share.access, share.selection)
        names = (SHARE_USER, SHARE_USER_AWAY, O2R, R2O)
        return [name for name in names if name in parts and self._repair_part(parts[name])]
