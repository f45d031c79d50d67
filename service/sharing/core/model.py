"""Value types of the domain and their shape in the state database."""

import time
import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from service.config import DEFAULT_SERVER


class Access(StrEnum):
    READ = "read"
    READ_WRITE = "read-write"


class Direction(StrEnum):
    OWNER_TO_RECIPIENT = "owner-to-recipient"
    RECIPIENT_TO_OWNER = "recipient-to-owner"


class Status(StrEnum):
    PENDING = "pending"
    DECLINED = "declined"
    EXPIRED = "expired"
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    REVOKING = "revoking"
    REVOKED = "revoked"


# Statuses that hold the owner -> recipient pair: at most one share per pair is in one.
LIVE_STATUSES = (Status.PENDING, Status.PROVISIONING, Status.ACTIVE, Status.REVOKING)


# The share ids of a pair: each follows from the pair and the share before it.
SHARE_IDS = uuid.UUID("5e1b0c2a-6d0f-4c4e-9a51-0b5a6c1e7d42")


def next_share_id(broker: str, owner: str, recipient: str, previous: str | None) -> str:
    """The id of the pair's share after `previous` (None: its first), for the broker whose
    state database is `broker`. Two requests that create the same pair's next share at
    once name it alike, so on a cluster, where both may be told yes, they write one share,
    not two. Another broker's shares of the pair have ids of their own."""
    return str(uuid.uuid5(SHARE_IDS, f"{broker}:{owner}>{recipient}>{previous or ''}"))


def now_epoch_ms() -> int:
    """The current time in epoch milliseconds, as the Inventory app stamps its docs."""
    return int(datetime.now(UTC).timestamp() * 1000)


def now_iso(later_seconds: int = 0) -> str:
    """The current UTC time (plus `later_seconds`), ISO 8601 with seconds."""
    moment = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=later_seconds)
    return moment.isoformat().replace("+00:00", "Z")


def place(server: str, db: str) -> str:
    """One key for a database on a server, for the broker's own records (checkpoints,
    `_db_updates`): its bare name on the `default` server, else `server:db` (a `:`
    never occurs in a CouchDB database name)."""
    return db if server == DEFAULT_SERVER else f"{server}:{db}"


@dataclass(frozen=True)
class Database:
    """A registered user database, named by its Configuration UUID."""

    config_uuid: str
    database: str
    server: str
    registered_at: str

    @staticmethod
    def doc_id(config_uuid: str) -> str:
        return f"database:{config_uuid}"

    @property
    def place(self) -> str:
        return place(self.server, self.database)

    def to_doc(self) -> dict:
        return {"_id": self.doc_id(self.config_uuid), "type": "database", **self.__dict__}

    @classmethod
    def from_doc(cls, doc: dict) -> "Database":
        return cls(doc["config_uuid"], doc["database"], doc["server"], doc["registered_at"])


@dataclass(frozen=True)
class Selection:
    """What a share covers: collections (`None`: all) and custom rules (`None`: none)."""

    collections: list[str] | None
    rules: list[dict] | None = None


@dataclass
class Operation:
    """An operation in flight: its name, what it aims at, and the steps done so far."""

    name: str
    access: Access | None
    collections: list[str] | None
    purge: bool = False
    done: list[str] = field(default_factory=list)
    rules: list[dict] | None = None
    # When it began; "" in records written before this was kept.
    started_at: str = field(default_factory=now_iso)

    @classmethod
    def toward(cls, name: str, access: Access | None, selection: Selection | None) -> "Operation":
        """An operation aiming at `access` and `selection` (`None`: nothing at all)."""
        if selection is None:
            return cls(name, access, None)
        return cls(name, access, selection.collections, rules=selection.rules)

    @property
    def selection(self) -> Selection:
        return Selection(self.collections, self.rules)

    def to_dict(self) -> dict:
        return {**self.__dict__, "access": str(self.access) if self.access else None}

    @classmethod
    def from_dict(cls, data: dict) -> "Operation":
        access = Access(data["access"]) if data.get("access") else None
        return cls(**{"started_at": "", **data, "access": access})


@dataclass
class Share:
    """One share of an owner's collections with a recipient."""

    id: str
    owner: str
    recipient: str
    access: Access
    collections: list[str] | None
    status: Status
    created_at: str
    updated_at: str
    operation: Operation | None = None
    expires_at: str | None = None
    rev: str | None = None
    rules: list[dict] | None = None

    @classmethod
    def new(
        cls,
        owner: str,
        recipient: str,
        access: Access,
        selection: "Selection",
        share_id: str | None = None,
    ) -> "Share":
        """A new invitation, `pending`, with `share_id` (a fresh one unless given)."""
        stamp = now_iso()
        share_id = share_id or str(uuid.uuid4())
        return cls(
            share_id,
            owner,
            recipient,
            access,
            selection.collections,
            Status.PENDING,
            stamp,
            stamp,
            rules=selection.rules,
        )

    @property
    def selection(self) -> "Selection":
        return Selection(self.collections, self.rules)

    def adopt(self, access: Access, selection: "Selection") -> None:
        """Take on `access` and `selection`, as a finished change does."""
        self.access, self.collections, self.rules = access, selection.collections, selection.rules

    @property
    def current_status(self) -> Status:
        """The status, with a pending invitation past `expires_at` read as expired."""
        if self.status is Status.PENDING and self.expires_at and self.expires_at <= now_iso():
            return Status.EXPIRED
        return self.status

    @staticmethod
    def doc_id(share_id: str) -> str:
        return f"share:{share_id}"

    @property
    def db_sharing_doc_id(self) -> str:
        return f"db_sharing-{self.owner}--{self.recipient}"

    @property
    def etag(self) -> str:
        return f'"{self.rev}"'

    def to_doc(self) -> dict:
        doc = {
            "_id": self.doc_id(self.id),
            "type": "share",
            "id": self.id,
            "owner": self.owner,
            "recipient": self.recipient,
            "access": str(self.access),
            "collections": self.collections,
            "rules": self.rules,
            "status": str(self.status),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "operation": self.operation.to_dict() if self.operation else None,
            "expires_at": self.expires_at,
        }
        if self.rev:
            doc["_rev"] = self.rev
        return doc

    @classmethod
    def from_doc(cls, doc: dict) -> "Share":
        operation = doc.get("operation")
        return cls(
            id=doc["id"],
            owner=doc["owner"],
            recipient=doc["recipient"],
            access=Access(doc["access"]),
            collections=doc["collections"],
            status=Status(doc["status"]),
            created_at=doc["created_at"],
            updated_at=doc["updated_at"],
            operation=Operation.from_dict(operation) if operation else None,
            expires_at=doc.get("expires_at"),
            rev=doc.get("_rev"),
            rules=doc.get("rules"),
        )


# What a done action is, in the feed of events (`GET /v1/events`); a revoke by the
# recipient is `left`. Refusals, failures and the followers' own work stay in the audit
# trail only.
KINDS = {
    "create": "invited",
    "accept": "accepted",
    "decline": "declined",
    "revoke": "revoked",
    "patch": "changed",
    "rotate credentials": "credentials rotated",
    "expire": "expired",
    "purge": "purged",
    "replication failing": "replication failing",
    "replication recovered": "replication recovered",
}
# Events about a registration rather than a share: in the feed for admins only.
DATABASE_KINDS = {
    "register": "registered",
    "forget": "registration removed",
    "claim": "disputed",
    "dismiss claims": "dispute dismissed",
}
ADMIN_KINDS = set(DATABASE_KINDS.values())
# Who does an action, when the caller's role does not say otherwise.
ROLES = {"create": "owner", "patch": "owner", "rotate credentials": "owner"}
ROLES |= {"accept": "recipient", "decline": "recipient"}
ROLES |= {"register": "owner", "forget": "owner", "claim": "owner"}  # of the database


@dataclass(frozen=True)
class Event:
    """One change of a share's state, or of a registration, for the audit trail and the
    feed of events.

    `owner` and `recipient` are the share's Configuration UUIDs, so that a party's feed is
    one query; `role` is the actor's: owner, recipient, admin or broker. An event about a
    registration has no share: `database` names its Configuration UUID instead.
    """

    share_id: str
    action: str
    actor: str
    outcome: str
    at: str = field(default_factory=now_iso)
    owner: str = ""
    recipient: str = ""
    role: str = ""
    database: str = ""

    @property
    def kind(self) -> str | None:
        """What the event is in the feed; None for what stays in the audit trail only."""
        if self.outcome != "ok":
            return None
        if self.database:
            return DATABASE_KINDS.get(self.action)
        if self.action not in KINDS:
            return None
        return "left" if (self.action, self.role) == ("revoke", "recipient") else KINDS[self.action]

    def to_doc(self) -> dict:
        about = self.share_id or f"database-{self.database}"
        doc_id = f"event:{about}:{time.time_ns():020d}-{uuid.uuid4().hex[:6]}"
        doc = {"_id": doc_id, "type": "event", **self.__dict__}
        if not self.database:
            del doc["database"]
        return doc

    @classmethod
    def from_doc(cls, doc: dict) -> "Event":
        return cls(**{name: doc[name] for name in EVENT_FIELDS if name in doc})


EVENT_FIELDS = [f.name for f in fields(Event)]


def actor_role(action: str, actor: str, given: str = "") -> str:
    """The role an actor acts in: the one given, else admin, broker or the action's own."""
    if given:
        return given
    if actor.startswith("admin:"):
        return "admin"
    if not actor.startswith("user:"):
        return "broker"
    return ROLES.get(action, "")
