"""A CouchDB user per share, and its membership in exactly the share's two databases.

Replicator docs authenticate as this user, never as the broker's service account: the user
has no roles and may read and write only where a share's `_security` names it. CouchDB does
not version `_security`, so the broker's edits of it are serialized per database, read
back, and never touch an entry the broker did not add.
"""

import hashlib
import random
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from service.config import DEFAULT_SERVER
from service.couch import CouchClient, CouchUnavailable, DocumentConflict, NotFound
from service.sharing.core.errors import ConflictError
from service.sharing.core.model import now_iso, place

USERS_DB = "_users"
USER_PREFIX = "sharing-broker-"
# A share user's password is 256 random bits: stretching it protects nothing, while
# CouchDB's own hashing (600,000 PBKDF2 rounds by default) costs about 150 ms of its CPU
# per user. The broker hashes it itself, with PBKDF2-SHA1 and no `pbkdf2_prf`: what CouchDB
# 3.2 knows and later versions still accept. CouchDB 3.4+ may hash it again with its own
# settings after the first login (`upgrade_hash_on_auth`), off the request path.
SHARE_USER_ITERATIONS = 10


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
        try:
            current = couch.get(USERS_DB, body["_id"])
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

    def __init__(self, couch: CouchClient, locks: "DatabaseLocks"):
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
        database's lock. `security` is the doc as just read, if it was. Return the names
        changed.

        A database that is gone has no members: removing one from it is done already,
        adding one is refused (409).
        """
        changed: set[str] = set()
        adding = any(wanted.values())
        for _ in range(3):
            security = security if security is not None else self.current(db, adding)
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
            self.couch.put(db, "_security", json={**security, "members": members})
            changed.update(todo)
            security = self.couch.get(db, "_security")  # read back: the next round checks it
        if all(self.is_member(security, n) == present for n, present in wanted.items()):
            return changed
        raise DocumentConflict(409, "conflict", "_security kept changing", f"PUT /{db}/_security")

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


class DatabaseLocks:
    """Per-database locks, across threads and broker replicas, kept in the state database.

    One lock covers every edit the broker makes to a database's `_security` and guard. A
    lock doc names its holder and expires after `ttl` seconds, so a crashed holder cannot
    block the database for longer. A lock this process holds in CouchDB but in no thread is
    a leftover of a request that died mid-way, and is taken over at once. A waiter waits a
    little longer than `ttl`, so a lock left by a process that died is always waited out.
    """

    def __init__(
        self, couch: CouchClient, state_db: str, server: str = DEFAULT_SERVER, ttl: float = 15.0
    ):
        """`couch` holds `state_db`; the locks are of databases on `server`."""
        self.couch = couch
        self.state_db = state_db
        self.server = server
        self.ttl = ttl
        self.wait = ttl + 2.0
        self.holder = uuid.uuid4().hex
        self._local: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, db: str) -> Iterator[None]:
        with self._guard:
            local = self._local.setdefault(db, threading.Lock())
        with local:
            lock_id = f"lock:security:{place(self.server, db)}"
            rev = self._acquire(lock_id)
            try:
                yield
            finally:
                self._release(lock_id, rev)

    def _acquire(self, lock_id: str) -> str:
        """Take the lock; return the revision to release it with."""
        deadline = time.monotonic() + self.wait
        rev = None  # a first attempt needs no read
        while time.monotonic() < deadline:
            doc = {
                "_id": lock_id,
                "type": "lock",
                "holder": self.holder,
                "until": now_iso(int(self.ttl)),
            }
            if rev:
                doc["_rev"] = rev
            try:
                return self.couch.put(self.state_db, lock_id, json=doc)["rev"]
            except DocumentConflict:
                pass
            try:
                current = self.couch.get(self.state_db, lock_id)
            except NotFound:
                rev = None
                continue
            if current["until"] > now_iso() and current["holder"] != self.holder:
                time.sleep(random.uniform(0.005, 0.02))  # noqa: S311 (jitter) held: wait
                rev = None
                continue
            rev = current["_rev"]  # expired, or left by a request of ours that died
        raise CouchUnavailable(f"lock {lock_id}", "held by another replica")

    def _release(self, lock_id: str, rev: str) -> None:
        # Gone, taken over after it expired, or it will expire by itself.
        with suppress(NotFound, DocumentConflict, CouchUnavailable):
            self.couch.delete(self.state_db, lock_id, params={"rev": rev})
