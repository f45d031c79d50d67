"""What a share places in CouchDB, and making it match what the share wants.

A share is made of these parts:
- `share_user`: its own CouchDB user in `_users` on the owner's server, and
  `share_user:recipient` on the recipient's server when that is another one. Its roles make
  it a member of the share's databases on that server, and carry its scope in each (what
  the write guard lets it write there);
- `access:owner` and `access:recipient`: each database made ready for share users, once
  (the member role in its `_security`, the broker's fixed guard). A share never takes
  this away: without a share user holding the role, it gives nothing;
- `db_sharing` in the owner's database (read-write only);
- `replication:owner-to-recipient` and `replication:recipient-to-owner` in `_replicator`
  on the owner's server, authenticating as the share user.

`converge` removes the parts that should not exist, then writes the ones that should, in
stages; the parts of one stage are independent and go together. The order loses nothing
and leaks nothing back: replication stops before `db_sharing` goes (the broker withdraws the
recipient's copy itself), and starts only once the user, its access and `db_sharing` are
in place; the credential goes last, so replication stops even if a replicator doc survives.
"""

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from service.config import DEFAULT_SERVER
from service.couch import CouchClient, CouchError, CouchUnavailable, DocumentConflict, NotFound
from service.sharing.core.model import Access, Direction, Share, now_epoch_ms
from service.sharing.core.sites import Site, Sites
from service.sharing.core.together import run_each, run_together
from service.sharing.crossing.selectors import Scope, share_selector
from service.sharing.placing.credentials import (
    USERS_DB,
    Credentials,
    ensure_user,
    hashed_password,
    user_doc_id,
)
from service.sharing.placing.guard import member_role, scope_role
from service.sharing.placing.replicator import (
    HELD,
    IDLE,
    REPLICATOR_DB,
    Endpoint,
    is_held,
    replication_status,
    replicator_doc,
)
from service.sharing.placing.siblings import read_alone

JOB_STOP_PAUSES = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
O2R = f"replication:{Direction.OWNER_TO_RECIPIENT}"
R2O = f"replication:{Direction.RECIPIENT_TO_OWNER}"
DB_SHARING = "db_sharing"
SHARE_USER = "share_user"
SHARE_USER_AWAY = "share_user:recipient"  # only when the recipient's server is another one
ACCESS_OWNER = "access:owner"
ACCESS_RECIPIENT = "access:recipient"
REMOVAL_STAGES = (
    (R2O, O2R),
    (DB_SHARING,),
    (ACCESS_RECIPIENT, ACCESS_OWNER),
    (SHARE_USER, SHARE_USER_AWAY),
)
WRITE_STAGES = (
    (SHARE_USER, SHARE_USER_AWAY, ACCESS_OWNER, ACCESS_RECIPIENT, DB_SHARING),
    (O2R, R2O),
)
# Fields that may differ between a stored part and a wanted one without a rewrite.
_VOLATILE = frozenset({"_id", "_rev", "created_at", "updated_at"})


@dataclass(frozen=True)
class Part:
    """One part of a share: where it lives (a server and a database) and, when wanted,
    its body.

    `kind` is `doc` for a plain doc, `user` for the share user (`user+password` when its
    password must be set), and `access` for `db` made ready for share users (`doc_id` is
    then the share user's name, `body` `{}`).
    """

    server: str
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
    owner_server: str = DEFAULT_SERVER
    recipient_server: str = DEFAULT_SERVER


def wanted_parts(
    share: Share,
    target: Target,
    credentials: Credentials,
    replication_urls: Mapping[str, str],
    broker: str,
    continuous: bool = True,
) -> dict[str, Part]:
    """Every part name with where it lives, and a body for those the target wants.

    `replication_urls` tell how replicators reach each server. Both replications run on
    the owner's server (see `replicator`). Bodies are labelled with `broker` (its state
    database), so each broker recognises its own. The replications are `continuous`, or
    one-shot runs that the on-change follower starts again.
    """
    owner_end, recipient_end = (
        Endpoint(replication_urls[server], credentials.username, credentials.password)
        for server in (target.owner_server, target.recipient_server)
    )
    o2r = replicator_doc(
        share,
        Direction.OWNER_TO_RECIPIENT,
        (owner_end, target.owner_db),
        (recipient_end, target.recipient_db),
        share_selector(
            share.owner,
            share.recipient,
            target.access or Access.READ,
            target.scope,
            Direction.OWNER_TO_RECIPIENT,
        ),
        broker,
        continuous,
    )
    r2o = replicator_doc(
        share,
        Direction.RECIPIENT_TO_OWNER,
        (recipient_end, target.recipient_db),
        (owner_end, target.owner_db),
        share_selector(
            share.owner,
            share.recipient,
            Access.READ_WRITE,
            target.reverse,
            Direction.RECIPIENT_TO_OWNER,
        ),
        broker,
        continuous,
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
    # What the share user may write: into the owner's database only what comes back in
    # read-write sharing; into the recipient's, the shared docs and `db_sharing`.
    owner_scope = {
        **guard_scope(target.reverse if two_way else Scope([])),
        "read_only": not two_way,
        "db_sharing": None,
        "owner_label": share.owner if two_way else None,
    }
    recipient_scope = {
        **guard_scope(target.scope),
        "read_only": False,
        "db_sharing": share.db_sharing_doc_id if two_way else None,
    }
    home, away = target.owner_server, target.recipient_server
    scopes = {(home, target.owner_db): owner_scope, (away, target.recipient_db): recipient_scope}

    def user(server: str) -> Part:
        """The share user on `server`, its roles those of the share's databases there."""
        roles = []
        for (at, db), scope in scopes.items():
            roles += [member_role(db), scope_role(db, scope)] if at == server else []
        body = {
            "_id": user_doc_id(name),
            "name": name,
            "type": "user",
            "roles": roles,
            **hashed_password(credentials.password),
            "sharing_broker": {"broker": broker, "share_id": share.id},
        }
        kind = "user+password" if credentials.fresh else "user"
        return Part(server, USERS_DB, body["_id"], body if live else None, kind)

    ready = {} if live else None
    parts = {
        SHARE_USER: user(home),
        ACCESS_OWNER: Part(home, target.owner_db, name, ready, "access"),
        ACCESS_RECIPIENT: Part(away, target.recipient_db, name, ready, "access"),
        O2R: Part(home, REPLICATOR_DB, o2r["_id"], o2r if live else None),
        DB_SHARING: Part(home, target.owner_db, db_sharing["_id"], db_sharing if two_way else None),
        R2O: Part(home, REPLICATOR_DB, r2o["_id"], r2o if two_way else None),
    }
    if away != home:  # the same user, with the same password, on the recipient's server
        parts[SHARE_USER_AWAY] = user(away)
    return parts


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


def converge(
    sites: Sites,
    parts: dict[str, Part],
    done: list[str],
    record: Callable[[str], None],
) -> None:
    """Remove unwanted parts, then write wanted ones, stage by stage; skip names in `done`,
    and record each name once it is through.

    Writes stop at the first failure. A removal that fails on one server does not hold
    back the others: that server's later stages wait, the other servers' parts still go,
    in stage order, and the first failure is raised at the end. Taking away more never
    opens anything, and a server that is down keeps nothing half-done on those that are up.
    """
    failed: dict[str, Exception] = {}  # server -> its first failure
    for stage, removing in _stages(parts, done):
        groups: dict[tuple[str, str, str], list[str]] = {}
        for name in stage:
            part = parts[name]
            if part.server not in failed:
                key = (part.server, part.kind, part.db if part.kind == "doc" else "")
                groups.setdefault(key, []).append(name)
        outcomes = run_each(
            *(
                lambda k=key, g=names: _apply_group(sites[k[0]], [parts[n] for n in g])
                for key, names in groups.items()
            )
        )
        for ((server, _, _), names), error in zip(groups.items(), outcomes, strict=True):
            if error is None:
                for name in names:
                    record(name)
            else:
                failed.setdefault(server, error)
        if failed and not removing:
            break
    if failed:
        raise next(iter(failed.values()))


def _stages(parts: dict[str, Part], done: list[str]) -> list[tuple[list[str], bool]]:
    """The stages with something to do, each with whether it removes."""
    # A new password must reach the user even if an earlier attempt set another one.
    todo = {n for n, part in parts.items() if n not in done or part.kind == "user+password"}
    stages = [
        ([n for n in stage if n in todo and parts[n].body is None], True)
        for stage in REMOVAL_STAGES
    ]
    stages += [
        ([n for n in stage if n in todo and parts[n].body is not None], False)
        for stage in WRITE_STAGES
    ]
    return [(names, removing) for names, removing in stages if names]


def _apply_group(site: Site, group: list[Part]) -> None:
    """Apply parts of one server and kind (and, for docs, one database) in as few requests
    as may be."""
    first, couch = group[0], site.couch
    if first.kind == "access":
        run_together(*(lambda p=part: apply(site, p) for part in group))
    elif first.kind == "doc" and len(group) > 1:
        removed = [part.doc_id for part in group if part.body is None]
        ensure_docs(couch, first.db, [part.body for part in group if part.body is not None])
        ensure_absent_docs(couch, first.db, removed)
    else:
        for part in group:
            apply(site, part)


def apply(site: Site, part: Part) -> bool:
    """Make one part exist as wanted, or not exist, on its server (`site`); return whether
    anything changed."""
    couch = site.couch
    if part.kind == "access":  # a database, once ready, stays ready
        return part.body is not None and site.access.prepare(part.db)
    if part.body is None:
        ensure_absent(couch, part.db, part.doc_id)
        return True
    if part.kind.startswith("user"):
        return ensure_user(couch, part.body, set_password=part.kind == "user+password")
    ensure_present(couch, part.db, part.body)
    return True


def ensure_docs(couch: CouchClient, db: str, bodies: list[dict]) -> None:
    """Write several docs in one request; those already there are brought in line apart."""
    if not bodies:
        return
    results = couch.post(db, "_bulk_docs", json={"docs": bodies})
    conflicts = {r["id"] for r in results if r.get("error") == "conflict"}
    refused = [r for r in results if not r.get("ok") and r["id"] not in conflicts]
    if refused:  # forbidden by a validate_doc_update, for one
        raise CouchError(403, refused[0]["error"], refused[0].get("reason", ""), f"POST /{db}")
    for body in bodies:
        if body["_id"] in conflicts:
            _overwrite(couch, db, body)


def ensure_absent_docs(couch: CouchClient, db: str, doc_ids: list[str]) -> None:
    """Delete those of the docs that exist, every branch of each: one request to find them,
    one to delete them."""
    if not doc_ids:
        return
    params = {"include_docs": "true", "conflicts": "true"}
    rows = couch.post(db, "_all_docs", json={"keys": doc_ids}, params=params)["rows"]
    live = [row["doc"] for row in rows if row.get("doc")]
    if not live:
        return
    tombstones = [
        {"_id": doc["_id"], "_rev": rev, "_deleted": True}
        for doc in live
        for rev in [doc["_rev"], *doc.get("_conflicts", [])]
    ]
    results = couch.post(db, "_bulk_docs", json={"docs": tombstones})
    for doc_id in {result["id"] for result in results if not result.get("ok")}:
        ensure_absent(couch, db, doc_id)  # changed meanwhile: read it again


def ensure_present(couch: CouchClient, db: str, body: dict) -> None:
    """Write `body` unless a doc with the same content is there already.

    A new doc is written at once; only a conflict costs a read.
    """
    try:
        couch.put(db, body["_id"], json=body)
    except DocumentConflict:
        _overwrite(couch, db, body)


def _overwrite(couch: CouchClient, db: str, body: dict) -> None:
    """Write `body` over the doc there, unless it has the same content already."""
    write_over(couch, db, body["_id"], _over(couch, db, body, restart_failed=False))


def ensure_current(couch: CouchClient, db: str, body: dict) -> bool:
    """Like `ensure_present`, and also restart a replication CouchDB marked failed.

    Return whether anything was written. A doc that changed meanwhile is read again: the
    replicator writes a continuous job's failure into its doc, and may have written a
    one-shot run's end into a doc made before runs were the broker's own.
    """
    return write_over(couch, db, body["_id"], _over(couch, db, body, restart_failed=True))


def _over(
    couch: CouchClient, db: str, body: dict, restart_failed: bool
) -> Callable[[dict | None], dict | None]:
    """What to write over the doc there (None: nothing), so that it reads as `body`."""

    def replacement(current: dict | None) -> dict | None:
        if current is None:
            return dict(body)
        failed = restart_failed and current.get("_replication_state") == "failed"
        if not failed and not _differs(current, body):
            return None
        if is_held(body) and not is_held(current):
            # CouchDB stops a job only when its doc goes: one written over as held would
            # run on. So it goes, and the held doc is written over its tombstone.
            couch.delete(db, body["_id"], params={"rev": current["_rev"]})
            _wait_for_the_job_to_stop(couch, body["_id"])
            return dict(body)
        doc = {**body, "_rev": current["_rev"]}  # CouchDB's `_replication_*` fields dropped
        if "created_at" in current:
            doc["created_at"] = current["created_at"]
        return doc

    return replacement


def _wait_for_the_job_to_stop(couch: CouchClient, doc_id: str) -> None:
    """Wait, a few seconds at most, until CouchDB's scheduler shows no job for a deleted
    replicator doc. Its changes feed shows a doc's last revision only: if the held doc
    came before it saw the deletion, the job would run on."""
    for pause in JOB_STOP_PAUSES:
        try:
            state = replication_status(couch, doc_id).state  # `unknown`: gone, or no scheduler
        except (CouchError, CouchUnavailable):
            return
        if state in (IDLE, "failed", "unknown"):
            return
        time.sleep(pause)


def write_over(
    couch: CouchClient, db: str, doc_id: str, replacement: Callable[[dict | None], dict | None]
) -> bool:
    """Write `replacement(current)` (the doc there, or None) unless it is None; read again
    when the doc changed meanwhile, before the write or a deletion `replacement` made.
    Return whether it wrote."""
    for _ in range(3):
        try:
            current = read_alone(couch, db, doc_id)
        except NotFound:
            current = None
        try:
            doc = replacement(current)
            if doc is None:
                return False
            couch.put(db, doc_id, json=doc)
            return True
        except DocumentConflict:
            continue  # changed meanwhile: read again
    raise DocumentConflict(409, "conflict", "kept changing", f"PUT /{db}/{doc_id}")


def restart_replication(couch: CouchClient, doc_id: str) -> None:
    """Delete the replicator doc and write it again: CouchDB starts its job at once, with
    no crash backoff, and from its checkpoint (the replication id is the same). Writing
    the same body over it would change nothing. A sibling left standing would become the
    doc once this one is deleted, and refuse the new write."""
    current = read_alone(couch, REPLICATOR_DB, doc_id)
    couch.delete(REPLICATOR_DB, doc_id, params={"rev": current["_rev"]})
    body = {k: v for k, v in current.items() if k != "_rev" and not k.startswith("_replication")}
    couch.put(REPLICATOR_DB, doc_id, json=body if body.get("continuous") else body | HELD)


def ensure_absent(couch: CouchClient, db: str, doc_id: str) -> None:
    """Delete the doc if it exists, every branch of it."""
    for _ in range(3):
        try:
            current = read_alone(couch, db, doc_id)
            couch.delete(db, doc_id, params={"rev": current["_rev"]})
            return
        except NotFound:
            return
        except DocumentConflict:
            continue
    raise DocumentConflict(409, "conflict", "kept changing", f"DELETE /{db}/{doc_id}")


def _differs(current: dict, wanted: dict) -> bool:
    return any(current.get(k) != v for k, v in wanted.items() if k not in _VOLATILE)
