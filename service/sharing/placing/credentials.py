"""A CouchDB user per share, and its membership in exactly the share's two databases.

Replicator docs authenticate as this user, never as the broker's service account: the user
has no roles and may read and write only where a share's `_security` names it. CouchDB does
not version `_security`, so the broker's edits of it are serialized per database, start
from a copy that has the last one, are read back, and never touch an entry the broker did
not add.
"""

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, field

from service.couch import CouchClient, DocumentConflict, NotFound
from service.sharing.core.errors import ConflictError
from service.sharing.placing.locks import DatabaseLocks
from service.sharing.placing.siblings import read_alone

log = logging.getLogger(__name__)

USERS_DB = "_users"
USER_PREFIX = "sharing-broker-"
# A share user's password is 256 random bits: stretching it protects nothing, while
# CouchDB's own hashing (600,000 PBKDF2 rounds by default) costs about 150 ms of its CPU
# per user. The broker hashes it itself, with PBKDF2-SHA1 and no `pbkdf2_prf`: what CouchDB
# 3.2 knows and later versions still accept. CouchDB 3.4+ may hash it again with its own
# settings after the first login (`upgrade_hash_on_auth`), off the request path.
SHARE_USER_ITERATIONS = 10
# How long a read of `_security` waits for the copy it comes from to have the broker's last
# edit: a copy is milliseconds behind the others, seconds on a cluster under load.
SETTLING_PAUSES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0)


def share_user_name(share_id: str) -> str:
    return f"{USER_PREFIX}{share_id}"


def user_doc_id(name: str) -> str:
    return f"org.couchdb.user:{name}"


def new_password() -> str:
    """256 bits from the system's CSPRNG."""
    return secrets.token_urlsafe(32)


def hashed_password(password: str) -> dict:
    """The `_users` fields that let `password` log in, hashed here instead of by CouchDB."""
    salt = secrets.token_hex(16)
    key = hashlib.pbkdf2_hmac("sha1", password.encode(), salt.encode(), SHARE_USER_ITERATIONS)
    return {
        "password_scheme": "pbkdf2",
        "iterations": SHARE_USER_ITERATIONS,
        "salt": salt,
        "derived_key": key.hex(),
    }


PASSWORD_FIELDS = frozenset({"password_scheme", "pbkdf2_prf", "iterations", "salt", "derived_key"})


@dataclass(frozen=True)
class Credentials:
    """A share user's name and password; `fresh` when the password is new and must be set."""

    username: str
    password: str = field(repr=False)
    fresh: bool = False


def ensure_user(couch: CouchClient, body: dict, set_password: bool) -> bool:
    """Create the share user, or bring its roles and label in line; set its password if asked.

    Return whether anything was written.
    """
    try:  # a new user is written at once; only an existing one costs a read
        couch.put(USERS_DB, body["_id"], json=body)
        return True
    except DocumentConflict:
        pass
    kept = {k: v for k, v in body.items() if k not in PASSWORD_FIELDS}
    for _ in range(3):  # CouchDB itself rewrites a user when it re-hashes the password
        try:  # a user doc with siblings logs nobody in
            current = read_alone(couch, USERS_DB, body["_id"])
        except NotFound:  # deleted meanwhile
            current = {}
        if not set_password and current and all(current.get(k) == v for k, v in kept.items()):
            return False
        if set_password:  # CouchDB's own hash of an earlier password must not linger
            current = {k: v for k, v in current.items() if k not in PASSWORD_FIELDS}
        update = {**current, **(body if set_password else kept)}
        if not set_password and "derived_key" not in update:
            update.update({k: v for k, v in body.items() if k in PASSWORD_FIELDS})
        try:
            couch.put(USERS_DB, body["_id"], json=update)
            return True
        except DocumentConflict:
            continue
    raise DocumentConflict(409, "conflict", "kept changing", f"PUT /{USERS_DB}/{body['_id']}")


class SecurityEditor:
    """Adds or removes share users' names in a database's `_security` members, one edit
    at a time."""

    def __init__(self, couch: CouchClient, locks: DatabaseLocks):
        self.couch = couch
        self.locks = locks

    def ensure_member(self, db: str, name: str, present: bool) -> bool:
        """Return whether `_security` was changed; takes the database's lock if it must."""
        if self.is_member(self.current(db, present), name) == present:
            return False  # nothing to change: no need to lock
        with self.locks.hold(db):
            return name in self.set_members(db, {name: present})

    def set_members(
        self, db: str, wanted: dict[str, bool], security: dict | None = None
    ) -> set[str]:
        """Add (True) or remove (False) names and read them back; the caller holds the
        database's lock. `security` is the doc as just read by `settled`, if it was. Return
        the names changed.

        A database that is gone has no members: removing one from it is done already,
        adding one is refused (409).
        """
        changed: set[str] = set()
        adding = any(wanted.values())
        for _ in range(3):
            security = security if security is not None else self.settled(db, adding)
            if security is None:
                return changed  # the database went away meanwhile: nothing to remove
            todo = [n for n, present in wanted.items() if self.is_member(security, n) != present]
            if not todo:
                return changed
            members = dict(security.get("members") or {})
            names = list(members.get("names") or [])
            if adding and not names and not members.get("roles"):
                raise ConflictError(
                    f"{db} lists no members in its _security, so anyone may read it; naming"
                    " a share user there would lock everyone else out. Set its members first"
                )
            kept = [n for n in names if wanted.get(n, True)]
            members["names"] = kept + [n for n in todo if wanted[n]]
            self.locks.confirm(db)  # `_security` has no revision: never write it unlocked
            self.couch.put(db, "_security", json={**security, "members": members})
            self.locks.leave(db, self.share_users_in({"members": members}))
            changed.update(todo)
            security = self.settled(db, adding)  # read back: the next round checks it
        if all(self.is_member(security, n) == present for n, present in wanted.items()):
            return changed
        raise DocumentConflict(409, "conflict", "_security kept changing", f"PUT /{db}/_security")

    def settled(self, db: str, wanted: bool) -> dict | None:
        """`_security` with the broker's last edit in it, as `current`; the caller holds
        the database's lock.

        On a cluster a read comes from one copy, which may be a little behind: read again
        until it names the share users the lock's last holder left. If it never does, it
        was edited outside the broker, and is taken as it is.
        """
        left = self.locks.left(db)

        def behind(security: dict | None) -> bool:
            return None not in (left, security) and self.share_users_in(security) != left

        security = self.current(db, wanted)
        for pause in SETTLING_PAUSES:
            if not behind(security):
                return security
            time.sleep(pause)
            security = self.current(db, wanted)
        if behind(security):
            log.info("%s: _security names other share users than the broker left", db)
        return security

    def current(self, db: str, wanted: bool) -> dict | None:
        """The database's `_security`; `None` if the database is gone and nothing is wanted."""
        try:
            return self.couch.get(db, "_security")
        except NotFound:
            if wanted:
                raise ConflictError("a database of this share no longer exists") from None
            return None

    @staticmethod
    def is_member(security: dict | None, name: str) -> bool:
        return security is not None and name in ((security.get("members") or {}).get("names") or [])

    @staticmethod
    def share_users_in(security: dict) -> list[str]:
        """The share users a `_security` doc names, sorted."""
        names = (security.get("members") or {}).get("names") or []
        return sorted(n for n in names if n.startswith(USER_PREFIX))
