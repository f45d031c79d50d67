"""Per-database locks, across threads and broker replicas, kept in the state database.

One lock covers every edit the broker makes to a database's `_security` and guard. A lock
doc names its holder and expires after `ttl` seconds, so a crashed holder cannot block the
database for longer. A lock this process holds in CouchDB but in no thread is a leftover of
a request that died mid-way, and is taken over at once. A waiter waits a little longer than
`ttl`, so a lock left by a process that died is always waited out.

A hold can outlast `ttl` (slow reads, retries, waiting for `_security` to settle), and
another replica may then take the lock over. So before each write that has no revision of
its own to fail on (`_security`), the holder `confirm`s the lock: it renews it, and learns
if it was lost, rather than write beside the new holder.

A lock also remembers what its last holder left: the share users it left named in the
database's `_security`. On a cluster, `GET /{db}/_security` answers from one copy of the
database, and `PUT` returns once most copies have it; so the next holder, through another
node, may read a copy without the last edit. That memory lets it tell. Releasing a lock
keeps its doc, with no holder; the state database keeps one copy, so the lock doc itself is
never stale.
"""

import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from service.config import DEFAULT_SERVER
from service.couch import CouchClient, CouchUnavailable, DocumentConflict, NotFound
from service.sharing.core.model import now_iso, place

log = logging.getLogger(__name__)


@dataclass
class _Held:
    """A lock as this process holds, or last held, it."""

    rev: str
    left: list[str] | None  # the share users named in `_security`, if known
    since: float = field(default_factory=time.monotonic)  # when it was taken or renewed


class DatabaseLocks:
    """The locks of the databases on one server."""

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
        self._held: dict[str, _Held] = {}  # by lock id: held now, or released by us last
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, db: str) -> Iterator[None]:
        with self._guard:
            local = self._local.setdefault(db, threading.Lock())
        with local:
            lock_id = self._lock_id(db)
            self._held[lock_id] = self._acquire(lock_id, self._held.pop(lock_id, None))
            try:
                yield
            finally:
                self._release(lock_id)

    def confirm(self, db: str) -> None:
        """Renew the lock the caller holds, once a third of its time has passed; raise
        CouchUnavailable if another replica took it over meanwhile."""
        lock_id = self._lock_id(db)
        held = self._held[lock_id]
        if time.monotonic() - held.since < self.ttl / 3:
            return
        try:
            held.rev = self._write(lock_id, held.rev, held.left, held=True)
        except DocumentConflict:
            raise CouchUnavailable(f"lock {lock_id}", "taken over after it expired") from None
        held.since = time.monotonic()

    def left(self, db: str) -> list[str] | None:
        """The share users the lock's last holder left in the database's `_security`, or
        None if unknown; the caller holds the lock."""
        return self._held[self._lock_id(db)].left

    def leave(self, db: str, names: list[str]) -> None:
        """Record the share users this holder leaves in `_security`, for the next holder."""
        self._held[self._lock_id(db)].left = sorted(names)

    def _lock_id(self, db: str) -> str:
        return f"lock:security:{place(self.server, db)}"

    def _acquire(self, lock_id: str, last: _Held | None) -> _Held:
        """Take the lock. `last` is how this process released it last: if nobody has taken
        it since, one write takes it again. Else a write tells, and the lock doc is read."""
        deadline = time.monotonic() + self.wait
        rev, left = (last.rev, last.left) if last else (None, None)
        write = True  # try it unread: a new database has no lock doc yet
        while time.monotonic() < deadline:
            if write:
                try:
                    return _Held(self._write(lock_id, rev, left, held=True), left)
                except DocumentConflict:
                    pass
            try:
                current = self.couch.get(self.state_db, lock_id)
            except NotFound:
                rev, left, write = None, None, True
                continue
            rev, left = current["_rev"], current.get("left")
            # Free, expired, or left by a request of ours that died: take it.
            write = current["until"] <= now_iso() or current["holder"] == self.holder
            if not write:
                time.sleep(random.uniform(0.005, 0.02))  # noqa: S311 (jitter) held: wait
        raise CouchUnavailable(f"lock {lock_id}", "held by another replica")

    def _release(self, lock_id: str) -> None:
        held = self._held[lock_id]
        try:
            held.rev = self._write(lock_id, held.rev, held.left, held=False)
        except (NotFound, DocumentConflict):
            log.warning("lock %s was taken over before its release: it expired mid-hold", lock_id)
            del self._held[lock_id]
        except CouchUnavailable:
            del self._held[lock_id]  # it will expire by itself

    def _write(self, lock_id: str, rev: str | None, left: list[str] | None, held: bool) -> str:
        """Write the lock doc, held by this process for `ttl` seconds or by nobody; return
        its new revision."""
        doc = {
            "_id": lock_id,
            "type": "lock",
            "holder": self.holder if held else "",
            "until": now_iso(int(self.ttl)) if held else "",
        }
        if rev:
            doc["_rev"] = rev
        if left is not None:
            doc["left"] = left
        return self.couch.put(self.state_db, lock_id, json=doc)["rev"]
