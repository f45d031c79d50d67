"""Who is calling: admin automation, or a CouchDB user checked by CouchDB itself.

A user belongs to one server: `dana` on one is not `dana` on another. Their credentials are
passed to `GET /_session` on the server they say they belong to, and are never stored: only
a hash of them keys a short cache of positive answers. A refusal is never cached, so a
revoked password or a removed member stops working at once.
"""

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from service.config import DEFAULT_SERVER
from service.couch import CouchClient, NotFound


@dataclass(frozen=True)
class Caller:
    """An admin token's holder, or a CouchDB user of a server with their roles."""

    name: str
    is_admin: bool = False
    roles: tuple[str, ...] = ()
    server: str = DEFAULT_SERVER

    @property
    def actor(self) -> str:
        """How the audit trail names the caller; never a secret. A user of another server
        is `user:<server>:<name>`: CouchDB allows no `:` in a user name, while `@` is
        common, so `dana` of server `second` is never `dana@second` of `default`."""
        if self.is_admin:
            return f"admin:{self.name}"
        elsewhere = "" if self.server == DEFAULT_SERVER else f"{self.server}:"
        return f"user:{elsewhere}{self.name}"

    @property
    def scope(self) -> tuple[str, str, str]:
        """Who the caller is, as parts that cannot run into each other."""
        return ("admin" if self.is_admin else "user", self.server, self.name)


class PositiveCache:
    """Remembers answers for `ttl` seconds, at most `size` of them, the least recently
    stored going first; what is worth keeping (a positive check, say) is the caller's call."""

    def __init__(self, ttl: float, size: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> object | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] < self.clock():
                self._entries.pop(key, None)
                return None
            return entry[1]

    def put(self, key: str, value: object) -> None:
        with self._lock:
            self._entries[key] = (self.clock() + self.ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


class Identity:
    """Checks users against one CouchDB server: their session, and their access to a
    database there."""

    def __init__(self, couch: CouchClient, cache_seconds: float = 30.0):
        self.couch = couch
        self._sessions = PositiveCache(cache_seconds)
        self._access = PositiveCache(cache_seconds)

    def user(self, credentials: dict[str, str]) -> Caller | None:
        """The user these credentials log in as, or None."""
        key = hashlib.sha256(repr(sorted(credentials.items())).encode()).hexdigest()
        cached = self._sessions.get(key)
        if cached is not None:
            return cached
        context = self.couch.session_as(credentials).get("userCtx") or {}
        if not context.get("name"):
            return None
        roles = tuple(context.get("roles") or ())
        caller = Caller(name=context["name"], roles=roles, server=self.couch.server)
        self._sessions.put(key, caller)
        return caller

    def can_read(self, caller: Caller, database: str) -> bool:
        """A member or admin in the database's `_security`, or a server admin."""
        if caller.is_admin or "_admin" in caller.roles:
            return True
        key = f"{caller.name}\x00{database}"
        if self._access.get(key):
            return True
        try:
            security = self.couch.get(database, "_security")
        except NotFound:
            return False
        allowed = _listed(security.get("members"), caller) or _listed(
            security.get("admins"), caller
        )
        if allowed:
            self._access.put(key, True)
        return allowed


def _listed(section: object, caller: Caller) -> bool:
    if not isinstance(section, dict):
        return False
    names = section.get("names") or []
    roles = section.get("roles") or []
    return caller.name in names or any(role in roles for role in caller.roles)
