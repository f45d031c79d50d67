"""A database made ready for share users, once: the broker's fixed guard, then the member
role in its `_security`.

Neither changes with a share, so no share edits an object another share edits: a share's
membership and scope come with its own user doc (see `guard`). Two writers that make the
same database ready write the same things, so they need no lock; the guard doc's revision
tells the second that the first was there.

A database of the earlier layout (one guard listing every share user's scope, each user
named in `_security`) moves on without a pause in its replications:
1. making it ready gives each of those users its scope as roles, then puts in the fixed
   guard, which keeps the earlier scopes as a fallback;
2. once a user's login carries its roles (CouchDB caches users for a moment), `settle`
   drops its earlier scope and its name: both are spare by then.
"""

import math

from service.couch import CouchClient, DocumentConflict, NotFound
from service.sharing.core.errors import ConflictError
from service.sharing.core.identity import PositiveCache
from service.sharing.core.together import run_together
from service.sharing.placing.credentials import USER_PREFIX, USERS_DB, user_doc_id
from service.sharing.placing.guard import (
    GUARD_ID,
    earlier_scopes,
    guard_doc,
    member_role,
    read_guard,
    scope_role,
    scopes_in_roles,
)
from service.sharing.placing.parts import write_over


class DatabaseAccess:
    """Makes the databases of one server ready for share users.

    It keeps the guard doc it last saw of each database (a few thousand at most), read with
    the database's config, so that making it ready costs one read (`_security`), not two;
    and the share users `_security` named there, so that settling one costs no read when it
    is not named.
    """

    KEPT = 4096

    def __init__(self, couch: CouchClient, broker: str):
        self.couch = couch
        self.broker = broker
        self._guards = PositiveCache(math.inf, self.KEPT)  # kept until pushed out
        self._named = PositiveCache(math.inf, self.KEPT)

    def prepare(self, db: str, fresh: bool = False) -> bool:
        """Make `db` ready; return whether anything was written. 409 if the database is
        gone, or lists no members (naming a role there would lock everyone else out).
        `fresh` reads the guard even if it was seen current lately."""
        guard = None if fresh else self._seen_guard(db)
        if guard is None:
            security, guard = self._read(db)
        else:  # a stale copy costs the guard write a conflict, and a read
            security = self._security(db)
        guarded = self._ensure_guard(db, guard)
        return self._ensure_role(db, security) or guarded

    def settle(self, db: str, name: str, roles_in_force: list[str]) -> bool:
        """Drop what the earlier layout kept for share user `name` in `db` (its scope in the
        guard, its name in `_security`) once the roles its logins carry make them spare;
        return whether anything was written."""
        changed = False
        if db in scopes_in_roles(roles_in_force):
            changed = self.drop_earlier(db, {name})
        named = self._named.get(db)
        if member_role(db) in roles_in_force and (named is None or name in named):
            changed = remove_member_name(self.couch, db, name) or changed
        return changed

    def drop_earlier(self, db: str, names: set[str]) -> bool:
        """Take these users' earlier scopes out of the guard; return whether it was written.
        An earlier version's guard left with none goes; the fixed guard stays."""
        guard = self._seen_guard(db) or {}
        for _ in range(3):
            kept = earlier_scopes(guard, self.broker)
            if not names & set(kept):
                return False
            kept = {n: scope for n, scope in kept.items() if n not in names}
            try:
                if not kept and not self._is_current(db, guard):
                    self.couch.delete(db, GUARD_ID, params={"rev": guard["_rev"]})
                    self.saw(db, None)
                else:
                    self._write_guard(db, guard, kept)
                return True
            except DocumentConflict:
                guard = self._fresh_guard(db)
        raise DocumentConflict(409, "conflict", "the guard kept changing", f"PUT /{db}/{GUARD_ID}")

    def earlier(self, db: str) -> dict[str, dict]:
        """The earlier scopes the guard of `db` holds, as read now."""
        return earlier_scopes(self._fresh_guard(db), self.broker)

    def saw(self, db: str, guard: dict | None) -> None:
        """Note the guard doc (None: there is none) of `db`, just read or written."""
        self._guards.put(db, guard or {})

    def _seen_guard(self, db: str) -> dict | None:
        return self._guards.get(db)

    def _fresh_guard(self, db: str) -> dict:
        guard = read_guard(self.couch, db)
        self.saw(db, guard)
        return guard

    def _read(self, db: str) -> tuple[dict, dict]:
        """`_security` and the guard doc, read at once."""
        security, guard = run_together(
            lambda: self._security(db), lambda: read_guard(self.couch, db)
        )
        self.saw(db, guard)
        return security, guard

    def _is_current(self, db: str, guard: dict) -> bool:
        """Whether it is the fixed guard (with whatever earlier scopes it keeps)."""
        wanted = guard_doc(db, self.broker, earlier_scopes(guard, self.broker))
        return all(guard.get(key) == value for key, value in wanted.items())

    def _ensure_guard(self, db: str, guard: dict) -> bool:
        """Write the fixed guard unless it is there; the users an earlier guard scoped get
        their scopes as roles first, and keep them in the guard meanwhile."""
        for _ in range(3):
            if self._is_current(db, guard):
                return False
            earlier = earlier_scopes(guard, self.broker)
            for name, scope in earlier.items():
                carry_scope(self.couch, name, db, scope)
            try:
                self._write_guard(db, guard, earlier)
                return True
            except DocumentConflict:
                guard = self._fresh_guard(db)
            except NotFound:
                raise ConflictError("a database of this share no longer exists") from None
        raise DocumentConflict(409, "conflict", "the guard kept changing", f"PUT /{db}/{GUARD_ID}")

    def _write_guard(self, db: str, current: dict, earlier: dict[str, dict]) -> None:
        wanted = guard_doc(db, self.broker, earlier)
        if current.get("_rev"):
            wanted["_rev"] = current["_rev"]
        self.saw(db, {**wanted, "_rev": self.couch.put(db, GUARD_ID, json=wanted)["rev"]})

    def _ensure_role(self, db: str, security: dict) -> bool:
        role = member_role(db)
        members = dict(security.get("members") or {})
        roles = list(members.get("roles") or [])
        if role in roles:
            return False
        if not members.get("names") and not roles:
            raise ConflictError(
                f"{db} lists no members in its _security, so anyone may read it; naming"
                " a share role there would lock everyone else out. Set its members first"
            )
        members["roles"] = [*roles, role]
        try:
            self.couch.put(db, "_security", json={**security, "members": members})
        except NotFound:
            raise ConflictError("a database of this share no longer exists") from None
        return True

    def _security(self, db: str) -> dict:
        try:
            security = self.couch.get(db, "_security")
        except NotFound:
            raise ConflictError("a database of this share no longer exists") from None
        names = (security.get("members") or {}).get("names") or []
        self._named.put(db, {n for n in names if n.startswith(USER_PREFIX)})
        return security


def carry_scope(couch: CouchClient, name: str, db: str, scope: dict) -> bool:
    """Give share user `name` its scope in `db` as roles, unless it has one there already;
    return whether its user doc was written. A user that is gone is left gone."""

    def with_scope(user: dict | None) -> dict | None:
        roles = (user or {}).get("roles") or []
        if user is None or db in scopes_in_roles(roles):
            return None
        return {**user, "roles": [*roles, member_role(db), scope_role(db, scope)]}

    return write_over(couch, USERS_DB, user_doc_id(name), with_scope)


def remove_member_name(couch: CouchClient, db: str, name: str) -> bool:
    """Take a share user's name out of `_security`, where the earlier layout put it; return
    whether it was there. Nothing else there is touched."""
    try:
        security = couch.get(db, "_security")
    except NotFound:
        return False
    members = dict(security.get("members") or {})
    names = list(members.get("names") or [])
    if name not in names or not name.startswith(USER_PREFIX):
        return False
    members["names"] = [n for n in names if n != name]
    couch.put(db, "_security", json={**security, "members": members})
    return True
