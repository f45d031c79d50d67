"""A share user's access to one database: its name in `_security` and its scope in the
broker's guard, changed together under the database's lock.

The scope is set before the name is added and dropped after it is removed, so the user is
never a member of a database whose guard does not know it. Changes to one database asked
for at the same time in this process go in one round: one lock, one guard write, one
`_security` write and its read-back, whatever their number.
"""

from dataclasses import dataclass, field

from service.couch import NotFound
from service.sharing.core.errors import ConflictError
from service.sharing.core.together import run_together
from service.sharing.placing.batches import GroupCommit
from service.sharing.placing.credentials import SecurityEditor
from service.sharing.placing.guard import GuardEditor
from service.sharing.placing.locks import DatabaseLocks


@dataclass(frozen=True)
class AccessChange:
    """`name` in `db` with `scope`, or (`scope` None) with no access at all."""

    db: str
    name: str
    scope: dict | None


@dataclass(frozen=True)
class Editors:
    """The serialized editors of the per-database parts: `_security` and the guard."""

    security: SecurityEditor
    guards: GuardEditor
    locks: DatabaseLocks
    rounds: GroupCommit = field(default_factory=GroupCommit, compare=False)

    def ensure_access(self, changes: list[AccessChange], check_first: bool) -> list[str]:
        """Make each change, the databases at once; return the databases changed.

        `check_first` reads them before locking and skips those in place already: cheaper
        when nothing is likely to change.
        """
        if check_first:
            changes = [c for c in changes if not self._in_place(c)]
        changed = run_together(
            *(lambda c=c: self.rounds.submit(c.db, c, self._round) for c in changes)
        )
        return [c.db for c, done in zip(changes, changed, strict=True) if done]

    def _round(self, changes: list[AccessChange]) -> list[bool]:
        """Apply changes to one database together, holding its lock; say which changed."""
        db = changes[0].db
        wanted = {c.name: c.scope for c in changes}  # a later change of a name wins
        granted = {name: scope for name, scope in wanted.items() if scope is not None}
        withdrawn = {name: None for name, scope in wanted.items() if scope is None}
        with self.locks.hold(db):
            security, guard = run_together(
                lambda: self.security.settled(db, bool(granted)),
                lambda: self.guards.current(db),
            )
            try:
                scoped = self.guards.set_scopes(db, granted, guard) if granted else set()
                members = {name: scope is not None for name, scope in wanted.items()}
                named = self.security.set_members(db, members, security)
                unscoped = set()
                if withdrawn:  # the guard as read, unless it was written since
                    unscoped = self.guards.set_scopes(db, withdrawn, None if scoped else guard)
                changed = scoped | named | unscoped
            except NotFound:  # the database went away meanwhile
                if granted:
                    raise ConflictError("a database of this share no longer exists") from None
                changed = set(wanted)
        return [c.name in changed for c in changes]

    def _in_place(self, change: AccessChange) -> bool:
        granted = change.scope is not None
        security, guard = run_together(
            lambda: self.security.current(change.db, granted),
            lambda: self.guards.current(change.db, fresh=True),
        )
        member = self.security.is_member(security, change.name)
        return member == granted and self.guards.scopes_in(guard).get(change.name) == change.scope
