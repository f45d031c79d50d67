"""Authentication: an admin bearer token, or a CouchDB user's own credentials.

A user sends the credentials their app uses on CouchDB (HTTP Basic, or the `AuthSession`
cookie); CouchDB checks them. With more than one server, the `CouchDB-Server` header names
the server the user belongs to (`default` when absent), and only that server checks them.
Too many failed logins for one name, or from one client, get 429.
"""

import base64
import binascii
import hmac
import ipaddress
import threading
import time
from collections import deque

from flask import current_app, g, request

from service.api.context import broker
from service.api.problems import problem
from service.config import DEFAULT_SERVER
from service.metrics import FAILED_LOGINS
from service.sharing.core.errors import ForbiddenError
from service.sharing.core.identity import Caller

CHALLENGE = 'Bearer realm="sharing-broker", Basic realm="sharing-broker"'
SERVER_HEADER = "CouchDB-Server"


class FailedLogins:
    """Counts failed logins per key in a sliding window."""

    SWEEP_AT = 10_000  # keys kept before the expired ones are swept

    def __init__(self, limit: int = 5, window_seconds: float = 60.0, clock=time.monotonic):
        self.limit = limit
        self.window = window_seconds
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> int:
        """Seconds the key must wait before trying again; 0 if it may try now."""
        with self._lock:
            recent = self._recent(key)
            if len(recent) < self.limit:
                return 0
            return max(1, int(recent[0] + self.window - self.clock()) + 1)

    def record(self, key: str) -> None:
        with self._lock:
            if len(self._failures) >= self.SWEEP_AT:
                for stale in [k for k in self._failures if not self._recent(k)]:
                    del self._failures[stale]
            self._recent(key).append(self.clock())

    def _recent(self, key: str) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= self.clock() - self.window:
            failures.popleft()
        return failures


class LoginLimits:
    """CouchDB's own lockout counts per user name, and so does this: `per_name` failed
    logins a minute for one name from one client (5 by default), and `per_client` for one
    client whatever the names (50). So one address, such as the app's backend, serves many
    users, and a user who mistypes a password locks out no one else."""

    def __init__(self, per_name: int = 5, per_client: int = 50, clock=time.monotonic):
        self.per_name = FailedLogins(per_name, clock=clock)
        self.per_client = FailedLogins(per_client, clock=clock)

    def retry_after(self, client: str, name: str) -> int:
        return max(
            self.per_name.retry_after(f"{client} {name}"), self.per_client.retry_after(client)
        )

    def record(self, client: str, name: str) -> None:
        self.per_name.record(f"{client} {name}")
        self.per_client.record(client)


def caller() -> Caller:
    """The authenticated caller of this request."""
    return g.caller


def require_admin(action: str) -> None:
    """Refuse (403) a caller who is not admin automation."""
    if not caller().is_admin:
        raise ForbiddenError(f"only admins may {action}")


def authenticate():
    """`before_request` hook: identify the caller, or answer 401 or 429.

    A valid admin token is never refused for rate reasons: it is a long random secret. A
    request with no credentials is no failed login. The limits count per user name (on the
    server the request names) and per client, as the trusted proxies name it.
    """
    if request.method == "OPTIONS":
        return None
    admin = _admin()
    if admin is not None:
        g.caller = admin
        return None
    if not _presents_credentials():
        return _unauthorized()
    client, name = client_address(), _login_name()
    limits: LoginLimits = current_app.extensions["sharing_broker_failed_logins"]
    wait = limits.retry_after(client, name)
    if wait:
        FAILED_LOGINS.labels("limited").inc()
        return problem(
            429, "too many failed logins; try again later", headers={"Retry-After": str(wait)}
        )
    found = _user()
    if found is None:
        limits.record(client, name)
        FAILED_LOGINS.labels("refused").inc()
        return _unauthorized()
    g.caller = found
    return None


def client_address() -> str:
    """The client's address: the socket's peer or, when that peer is a trusted proxy, the
    address it appended to X-Forwarded-For, and so on while that one is a trusted proxy too.

    Only what trusted proxies appended counts: the hops before them are the client's own
    writing. `*` trusts any peer as a proxy, but only the one the broker talks to.
    """
    trusted = current_app.config["BROKER_SETTINGS"].forwarded_allow_ips
    address = request.remote_addr or "unknown"
    forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",")]
    hops = [a for a in forwarded if a]
    if "*" in trusted:
        return hops[-1] if hops else address
    for hop in reversed(hops):
        if not _trusted(address, trusted):
            break
        address = hop
    return address


def _trusted(address: str, trusted: tuple[str, ...]) -> bool:
    """Whether the address is one of the trusted proxies, named or in a CIDR range."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in trusted:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a host name: gunicorn takes none either
    return False


def _login_name() -> str:
    """The server and user name the credentials claim, unchecked: the Basic name, or the
    name inside CouchDB's `AuthSession` cookie (`base64url(name:time:hmac)`)."""
    server = request.headers.get(SERVER_HEADER, DEFAULT_SERVER)
    authorization = request.headers.get("Authorization", "")
    if authorization.lower().startswith("basic "):
        name = _basic_name(authorization[6:].strip()) or ""
    else:
        name = _cookie_name(request.cookies.get("AuthSession", ""))
    return f"{server}:{name}"


def _basic_name(value: str) -> str | None:
    """The name in Basic credentials: base64 of `name:password`, in UTF-8, with a name;
    None if they are not that."""
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, colon, _ = decoded.partition(":")
    return name if name and colon else None


def _cookie_name(value: str) -> str:
    """The name in a CouchDB session cookie, unpadded base64url; "" if there is none."""
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        return decoded.decode("utf-8").partition(":")[0]
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""


def _presents_credentials() -> bool:
    return bool(request.headers.get("Authorization") or request.cookies.get("AuthSession"))


def _unauthorized():
    return problem(
        401,
        "send an admin bearer token, or your CouchDB credentials",
        headers={"WWW-Authenticate": CHALLENGE},
    )


def _admin() -> Caller | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    presented = token.strip().encode()
    found = None
    for label, admin_token in current_app.config["BROKER_SETTINGS"].labelled_admin_tokens():
        if hmac.compare_digest(presented, admin_token.encode()):
            found = Caller(name=label, is_admin=True)
    return found


def _user() -> Caller | None:
    """The user the credentials log in as, on the server the request names."""
    site = broker().sites.named(request.headers.get(SERVER_HEADER, DEFAULT_SERVER), SERVER_HEADER)
    authorization = request.headers.get("Authorization", "")
    if authorization.lower().startswith("basic "):
        if _basic_name(authorization[6:].strip()) is None:
            return None  # CouchDB would answer 400 or even 500 to it
        return site.identity.user({"Authorization": authorization})
    session = request.cookies.get("AuthSession")
    if session and not authorization:
        return site.identity.user({"Cookie": f"AuthSession={session}"})
    return None
