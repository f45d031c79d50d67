"""Settings read from the environment; each may also come from a file named by <NAME>_FILE."""

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_SERVER = "default"
RECORD_KEY_LABEL = b"sharing-broker record seal"
# A server's name: also the middle of its settings' names, upper-cased.
SERVER_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
# How share replications run: continuous jobs, or one-shot runs when a database changes.
CONTINUOUS, ON_CHANGE = "continuous", "on_change"


class ConfigError(Exception):
    """A setting is missing or invalid. The message names it and never holds its value."""


@dataclass(frozen=True)
class ServerSettings:
    """One CouchDB server the broker administers. `replication_url` is how the other
    servers' replicators (and its own) reach it."""

    name: str
    url: str
    user: str
    password: str = field(repr=False)
    replication_url: str = ""

    def __post_init__(self):
        if not self.replication_url:
            object.__setattr__(self, "replication_url", self.url)


@dataclass(frozen=True)
class Settings:
    """What the broker needs to run. Secrets are left out of repr."""

    couchdb_url: str
    couchdb_user: str
    couchdb_password: str = field(repr=False)
    admin_tokens: tuple[str, ...] = field(repr=False)
    replication_url: str = ""
    state_db: str = "sharing_broker"
    couch_connect_timeout: float = 3.05
    couch_read_timeout: float = 10.0
    invitation_ttl_seconds: int = 7 * 24 * 3600
    reconcile_interval_seconds: float = 0.0
    # How old an operation in a share's record must be before reconcile takes it over: a
    # younger one may still be running in another replica's request.
    operation_grace_seconds: float = 60.0
    follow_interval_seconds: float = 2.0
    # How the share replications run: one-shot runs `on_change`, or `continuous` jobs.
    replication_mode: str = ON_CHANGE
    # At most this many on-change runs at once; keep it under CouchDB's `max_jobs`.
    max_runs: int = 200
    # What one user may hold at once, per database they act for (admins are not bounded).
    max_pending_invitations: int = 20
    max_live_shares: int = 200
    # Failed logins a minute before 429: for one name from one client, and for one client.
    failed_logins_per_name: int = 5
    failed_logins_per_client: int = 50
    # Long polls and event streams one process holds at once (each holds a thread).
    max_waiting: int = 2
    # The longest a long poll waits, whatever it asks: under the proxies' idle timeouts.
    longest_wait_seconds: float = 60.0
    # The proxies trusted to name the client in X-Forwarded-For (gunicorn reads it too).
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1",)
    # Seals the broker's records; by default derived from the service password.
    record_key: str = field(default="", repr=False)
    # Servers besides `default`, which the settings above name and which holds the state.
    other_servers: tuple[ServerSettings, ...] = ()

    def __post_init__(self):
        if self.replication_mode == ON_CHANGE and not self.follow_interval_seconds:
            raise ConfigError(
                "BROKER_REPLICATION_MODE=on_change needs the followers: set"
                " BROKER_FOLLOW_INTERVAL above 0"
            )
        if not self.replication_url:  # CouchDB reaches the databases as the broker does
            object.__setattr__(self, "replication_url", self.couchdb_url)
        if not self.record_key:
            derived = hmac.new(self.couchdb_password.encode(), RECORD_KEY_LABEL, hashlib.sha256)
            object.__setattr__(self, "record_key", derived.hexdigest())

    def labelled_admin_tokens(self) -> list[tuple[str, str]]:
        """(label, token) per admin token; `label:token` entries name themselves."""
        pairs = []
        for index, entry in enumerate(self.admin_tokens, start=1):
            label, _, token = entry.rpartition(":")
            pairs.append((label or f"admin-{index}", token))
        return pairs

    @property
    def servers(self) -> tuple[ServerSettings, ...]:
        """Every server, `default` first."""
        default = ServerSettings(
            DEFAULT_SERVER,
            self.couchdb_url,
            self.couchdb_user,
            self.couchdb_password,
            self.replication_url,
        )
        return (default, *self.other_servers)

    @property
    def couch_timeout(self) -> tuple[float, float]:
        return (self.couch_connect_timeout, self.couch_read_timeout)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        """Read every BROKER_* setting, failing with one line that names what is wrong."""
        couchdb_url = _url("BROKER_COUCHDB_URL", _required(env, "BROKER_COUCHDB_URL"))
        replication_url = _optional(env, "BROKER_REPLICATION_URL") or couchdb_url
        tokens = tuple(
            t.strip() for t in _required(env, "BROKER_ADMIN_TOKENS").split(",") if t.strip()
        )
        if not tokens:
            raise ConfigError("BROKER_ADMIN_TOKENS holds no token")
        if any(len(t.rpartition(":")[2]) < 16 for t in tokens):
            raise ConfigError("BROKER_ADMIN_TOKENS: every token needs at least 16 characters")
        return cls(
            couchdb_url=couchdb_url,
            couchdb_user=_required(env, "BROKER_COUCHDB_USER"),
            couchdb_password=_required(env, "BROKER_COUCHDB_PASSWORD"),
            admin_tokens=tokens,
            replication_url=_url("BROKER_REPLICATION_URL", replication_url),
            state_db=_optional(env, "BROKER_STATE_DB") or "sharing_broker",
            couch_connect_timeout=_seconds(env, "BROKER_COUCHDB_CONNECT_TIMEOUT", 3.05),
            couch_read_timeout=_seconds(env, "BROKER_COUCHDB_READ_TIMEOUT", 10.0),
            invitation_ttl_seconds=int(_seconds(env, "BROKER_INVITATION_TTL_SECONDS", 604800)),
            reconcile_interval_seconds=_seconds(env, "BROKER_RECONCILE_INTERVAL", 0.0, zero=True),
            operation_grace_seconds=_seconds(env, "BROKER_OPERATION_GRACE", 60.0, zero=True),
            follow_interval_seconds=_seconds(env, "BROKER_FOLLOW_INTERVAL", 2.0, zero=True),
            replication_mode=_replication_mode(env),
            max_runs=_count(env, "BROKER_MAX_RUNS", 200),
            max_pending_invitations=_count(env, "BROKER_MAX_PENDING_INVITATIONS", 20),
            max_live_shares=_count(env, "BROKER_MAX_LIVE_SHARES", 200),
            failed_logins_per_name=_count(env, "BROKER_FAILED_LOGINS_PER_NAME", 5),
            failed_logins_per_client=_count(env, "BROKER_FAILED_LOGINS_PER_CLIENT", 50),
            max_waiting=_count(env, "BROKER_MAX_WAITING", 2),
            longest_wait_seconds=_seconds(env, "BROKER_LONGEST_WAIT", 60.0),
            record_key=_record_key(env),
            other_servers=_other_servers(env),
            forwarded_allow_ips=tuple(
                ip.strip()
                for ip in (_optional(env, "BROKER_FORWARDED_ALLOW_IPS") or "127.0.0.1").split(",")
                if ip.strip()
            ),
        )


def _other_servers(env: Mapping[str, str]) -> tuple[ServerSettings, ...]:
    """The servers `BROKER_SERVERS` names, each from its `BROKER_SERVER_<NAME>_*` settings."""
    names = [n.strip() for n in (_optional(env, "BROKER_SERVERS") or "").split(",") if n.strip()]
    for name in names:
        if not SERVER_NAME.fullmatch(name) or name == DEFAULT_SERVER:
            raise ConfigError(
                "BROKER_SERVERS: each name is a lower-case letter, then up to 31 lower-case"
                f" letters, digits or underscores, and not {DEFAULT_SERVER!r}"
            )
    if len(set(names)) != len(names):
        raise ConfigError("BROKER_SERVERS names a server twice")
    servers = []
    for name in names:
        prefix = f"BROKER_SERVER_{name.upper()}"
        url = _url(f"{prefix}_URL", _required(env, f"{prefix}_URL"))
        replication_url = _optional(env, f"{prefix}_REPLICATION_URL")
        servers.append(
            ServerSettings(
                name,
                url,
                _required(env, f"{prefix}_USER"),
                _required(env, f"{prefix}_PASSWORD"),
                _url(f"{prefix}_REPLICATION_URL", replication_url) if replication_url else url,
            )
        )
    return tuple(servers)


def _optional(env: Mapping[str, str], name: str) -> str | None:
    direct, path = env.get(name), env.get(f"{name}_FILE")
    if direct and path:
        raise ConfigError(f"{name} and {name}_FILE are both set; set one")
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE cannot be read: {exc.strerror}") from None
    return direct or None


def _required(env: Mapping[str, str], name: str) -> str:
    value = _optional(env, name)
    if not value:
        raise ConfigError(f"{name} is not set (set {name} or {name}_FILE)")
    return value


def _url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL")
    if parts.username or parts.password:
        raise ConfigError(f"{name} must not hold credentials; set the server's USER and PASSWORD")
    return value.rstrip("/")


def _seconds(env: Mapping[str, str], name: str, default: float, zero: bool = False) -> float:
    raw = _optional(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds") from None
    if value < 0 or (value == 0 and not zero):
        raise ConfigError(f"{name} must be positive")
    return value


def _replication_mode(env: Mapping[str, str]) -> str:
    mode = _optional(env, "BROKER_REPLICATION_MODE") or ON_CHANGE
    if mode not in (CONTINUOUS, ON_CHANGE):
        raise ConfigError(f"BROKER_REPLICATION_MODE must be {ON_CHANGE} or {CONTINUOUS}")
    return mode


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _optional(env, name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name} must be a whole number above 0")
    return int(raw)


def _record_key(env: Mapping[str, str]) -> str:
    key = _optional(env, "BROKER_RECORD_KEY") or ""
    if key and len(key) < 32:
        raise ConfigError("BROKER_RECORD_KEY needs at least 32 characters")
    return key
