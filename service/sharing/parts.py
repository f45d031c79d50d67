"""What a share places in CouchDB, and making it match what the share wants.

A share is made of these parts:
- `share_user`: its own CouchDB user in `_users`, with no roles;
- `member:owner` and `member:recipient`: that user's name in each database's `_security`;
- `guard:owner` and `guard:recipient`: that user's scope in each database's write guard;
- `db_sharing` in the owner's database (read-write only);
- `replication:owner-to-recipient` and `replication:recipient-to-owner` in `_replicator`,
  authenticating as the share user.

`converge` removes the parts that should not exist, then writes the ones that should, in an
order that loses nothing and leaks nothing back: the recipient->owner replication stops
before `db_sharing` goes, which goes before the owner->recipient replication stops; the
credential goes last, so replication stops even if a replicator doc survives.
"""

from collections.abc import Callable
from dataclasses import dataclass

from service.couch import CouchClient, DocumentConflict, NotFound
from service.sharing.credentials import (
    USERS_DB,
    Credentials,
    SecurityEditor,
    ensure_user,
    hashed_password,
    user_doc_id,
)
from service.sharing.guard import GuardEditor
from service.sharing.model import Access, Direction, Share, now_epoch_ms
from service.sharing.replicator import REPLICATOR_DB, Endpoint, replicator_doc
from service.sharing.selectors import Scope, share_selector

O2R = f"replication:{Direction.OWNER_TO_RECIPIENT}"
R2O = f"replication:{Direction.RECIPIENT_TO_OWNER}"
DB_SHARING = "db_sharing"
SHARE_USER = "share_user"
MEMBER_OWNER = "member:owner"
MEMBER_RECIPIENT = "member:recipient"
GUARD_OWNER = "guard:owner"
GUARD_RECIPIENT = "guard:recipient"
REMOVAL_ORDER = (
    R2O,
    DB_SHARING,
    O2R,
    GUARD_RECIPIENT,
    GUARD_OWNER,
    MEMBER_RECIPIENT,
    MEMBER_OWNER,
    SHARE_USER,
)
WRITE_ORDER = (
    SHARE_USER,
    MEMBER_OWNER,
    MEMBER_RECIPIENT,
    GUARD_OWNER,
    GUARD_RECIPIENT,
    DB_SHARING,
    O2R,
    R2O,
)
# Fields that may differ between a stored part and a wanted one without a rewrite.
_VOLATILE = frozenset({"_id", "_rev", "created_at", "updated_at"})


@dataclass(frozen=True)
class Part:
    """One part of a share: where it lives and, when wanted, its body.

    `kind` is `doc` for a plain doc, `user` for the share user (`user+password` when its
    password must be set), `member` for a name in `db`'s `_security` and `guard` for a scope
    in `db`'s write guard (for both, `doc_id` is the share user's name).
    """

    db: str
    doc_id: str
    body: dict | None = None
    kind: str = "doc"


@dataclass(frozen=True)
class Target:
    """The state a share is brought to: `access=None` means no parts at all.

    `scope` is what goes to the recipient; `reverse` what may come back in read-write.
    """

    access: Access | None
    scope: Scope
    owner_db: str
    recipient_db: str
    reverse: Scope


def wanted_parts(
    share: Share, target: Target, credentials: Credentials, replication_url: str, broker: str
) -> dict[str, Part]:
    """Every part name with where it lives, and a body for those the target wants.

    Bodies are labelled with `broker` (its state database), so each broker recognises its own.
    """
    endpoint = Endpoint(replication_url, credentials.username, credentials.password)
    o2r = replicator_doc(
        share,
        Direction.OWNER_TO_RECIPIENT,
        target.owner_db,
        target.recipient_db,
        share_selector(
            share.owner,
            share.recipient,
            target.access or Access.READ,
            target.scope,
            Direction.OWNER_TO_RECIPIENT,
        ),
        endpoint,
        broker,
    )
    r2o = replicator_doc(
        share,
        Direction.RECIPIENT_TO_OWNER,
        target.recipient_db,
        target.owner_db,
        share_selector(
            share.owner,
            share.recipient,
            Access.READ_WRITE,
            target.reverse,
            Direction.RECIPIENT_TO_OWNER,
        ),
        endpoint,
        broker,
    )
    stamp = now_epoch_ms()
    db_sharing = {
        "_id": share.db_sharing_doc_id,
        "type": "db_sharing",
        "data": {"permissions": ["read", "write"]},
        "created_at": stamp,
        "updated_at": stamp,
        # Marks the doc as the broker's, so reconcile may remove it when no share needs it.
        "sharing_broker": {"broker": broker, "share_id": share.id},
    }
    live = target.access is not None
    two_way = target.access is Access.READ_WRITE
    name = credentials.username
    user = {
        "_id": user_doc_id(name),
        "name": name,
        "type": "user",
        "roles": [],
        **hashed_password(credentials.password),
        "sharing_broker": {"broker": broker, "share_id": share.id},
    }
    user_kind = "user+password" if credentials.fresh else "user"
    # What the share user may write: into the owner's database only what comes back in
    # read-write sharing; into the recipient's, the shared docs and `db_sharing`.
    owner_scope = {
        **guard_scope(target.reverse if two_way else Scope([])),
        "read_only": not two_way,
        "db_sharing": None,
    }
    recipient_scope = {
        **guard_scope(target.scope),
        "read_only": False,
        "db_sharing": share.db_sharing_doc_id if two_way else None,
    }
    return {
        SHARE_USER: Part(USERS_DB, user["_id"], user if live else None, user_kind),
        MEMBER_OWNER: Part(target.owner_db, name, {} if live else None, "member"),
        MEMBER_RECIPIENT: Part(target.recipient_db, name, {} if live else None, "member"),
        GUARD_OWNER: Part(target.owner_db, name, owner_scope if live else None, "guard"),
        GUARD_RECIPIENT: Part(
            target.recipient_db, name, recipient_scope if live else None, "guard"
        ),
        O2R: Part(REPLICATOR_DB, o2r["_id"], o2r if live else None),
        DB_SHARING: Part(target.owner_db, db_sharing["_id"], db_sharing if two_way else None),
        R2O: Part(REPLICATOR_DB, r2o["_id"], r2o if two_way else None),
    }


def guard_scope(scope: Scope) -> dict:
    """The part of a guard scope that says which docs are in: the selector's own terms."""
    guard = {"collections": scope.collections}
    if scope.rules:
        guard["rules"] = [{"type": r.type, "where": r.source} for r in scope.rules]
    if scope.item_collections is not None:
        guard["item_collections"] = scope.item_collections
    if scope.item_ids is not None:
        guard["item_ids"] = scope.item_ids
    return guard


@dataclass(frozen=True)
class Editors:
    """The serialized editors of the per-database parts: `_security` and the guard."""

    security: SecurityEditor
    guards: GuardEditor


def converge(
    couch: CouchClient,
    editors: Editors,
    parts: dict[str, Part],
    done: list[str],
    record: Callable[[str], None],
) -> None:
    """Remove unwanted parts, then write wanted ones; skip names in `done`, record each."""
    steps = [n for n in REMOVAL_ORDER if parts[n].body is None]
    steps += [n for n in WRITE_ORDER if parts[n].body is not None]
    for name in steps:
        # A new password must reach the user even if an earlier attempt set another one.
        if name not in done or parts[name].kind == "user+password":
            apply(couch, editors, parts[name])
            record(name)


def apply(couch: CouchClient, editors: Editors, part: Part) -> bool:
    """Make one part exist as wanted, or not exist; return whether anything changed."""
    if part.kind == "member":
        return editors.security.ensure_member(part.db, part.doc_id, present=part.body is not None)
    if part.kind == "guard":
        return editors.guards.ensure_scope(part.db, part.doc_id, part.body)
    if part.body is None:
        ensure_absent(couch, part.db, part.doc_id)
        return True
    if part.kind.startswith("user"):
        return ensure_user(couch, part.body, set_password=part.kind == "user+password")
    ensure_present(couch, part.db, part.body)
    return True


def ensure_present(couch: CouchClient, db: str, body: dict) -> None:
    """Write `body` unless a doc with the same content is there already.

    A new doc is written at once; only a conflict costs a read.
    """
    doc_id = body["_id"]
    try:
        couch.put(db, doc_id, json=body)
        return
    except DocumentConflict:
        pass
    for _ in range(3):
        try:
            current = couch.get(db, doc_id)
        except NotFound:
            current = None
        if current is not None and not _differs(current, body):
            return
        doc = dict(body) if current is None else {**body, "_rev": current["_rev"]}
        if current is not None and "created_at" in current:
            doc["created_at"] = current["created_at"]
        try:
            couch.put(db, doc_id, json=doc)
            return
        except DocumentConflict:
            continue  # changed meanwhile: read again
    raise DocumentConflict(409, "conflict", "kept changing", f"PUT /{db}/{doc_id}")


def ensure_current(couch: CouchClient, db: str, body: dict) -> bool:
    """Like `ensure_present`, and also restart a replication CouchDB marked failed.

    Return whether anything was written.
    """
    try:
        current = couch.get(db, body["_id"])
    except NotFound:
        current = None
    failed = current is not None and current.get("_replication_state") == "failed"
    if current is not None and not failed and not _differs(current, body):
        return False
    if current is None:
        ensure_present(couch, db, body)
    else:  # a new revision without the `_replication_*` fields restarts it
        couch.put(db, body["_id"], json={**body, "_rev": current["_rev"]})
    return True


def restart_replication(couch: CouchClient, doc_id: str) -> None:
    """Delete the replicator doc and write it again: CouchDB starts its job at once, with
    no crash backoff, and from its checkpoint (the replication id is the same). Writing
    the same body over it would change nothing."""
    current = couch.get(REPLICATOR_DB, doc_id)
    couch.delete(REPLICATOR_DB, doc_id, params={"rev": current["_rev"]})
    body = {k: v for k, v in current.items() if k != "_rev" and not k.startswith("_replication")}
    couch.put(REPLICATOR_DB, doc_id, json=body)


def ensure_absent(couch: CouchClient, db: str, doc_id: str) -> None:
    """Delete the doc if it exists."""
    for _ in range(3):
        try:
            current = couch.get(db, doc_id)
            couch.delete(db, doc_id, params={"rev": current["_rev"]})
            return
        except NotFound:
            return
        except DocumentConflict:
            continue
    raise DocumentConflict(409, "conflict", "kept changing", f"DELETE /{db}/{doc_id}")


def _differs(current: dict, wanted: dict) -> bool:
    return any(current.get(k) != v for k, v in wanted.items() if k not in _VOLATILE)
