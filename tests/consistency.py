"""What "consistent" means after reconcile: every share whole or wholly gone, no orphan."""

import hashlib
import hmac

from service.sharing.core.model import Access, Share, Status
from service.sharing.core.store import pair_id
from service.sharing.lifecycle.views import replication_ids
from service.sharing.placing.credentials import USER_PREFIX
from service.sharing.placing.guard import scopes_in_roles
from tests.servers.demo import ALICE, BOB

DB_SHARING = f"db_sharing-{ALICE}--{BOB}"


def shares_of(couch, state_db: str) -> list[Share]:
    docs = couch.all_docs(state_db).values()
    return [Share.from_doc(d) for d in docs if d.get("type") == "share"]


def broker_parts(couch, dbs) -> dict[str, set[str]]:
    """The broker's docs that touch these databases: replicator docs, db_sharing docs."""
    replications = {
        doc_id
        for doc_id, doc in couch.all_docs("_replicator").items()
        if doc_id.startswith("sharing-broker-")
        and dbs["alice"]
        in (doc["source"]["url"].rsplit("/", 1)[1], doc["target"]["url"].rsplit("/", 1)[1])
    }
    db_sharing = {i for i in couch.all_docs(dbs["alice"]) if i.startswith("db_sharing-")}
    return {"replications": replications, "db_sharing": db_sharing}


def share_user_roles(couch) -> dict[str, list[str]]:
    """Every share user on the server, with its roles."""
    users = couch.all_docs("_users").values()
    return {
        u["name"]: u.get("roles", []) for u in users if u.get("name", "").startswith(USER_PREFIX)
    }


def members(couch, db: str) -> set[str]:
    """The share users that are members of `db`: named in its `_security`, or holding a
    role it names."""
    listed = couch.get(f"{db}/_security").get("members") or {}
    names, roles = set(listed.get("names") or []), set(listed.get("roles") or [])
    return {n for n, held in share_user_roles(couch).items() if n in names or roles & set(held)}


def scopes(couch, db: str) -> dict[str, dict]:
    """The scope each share user carries in `db`, by name."""
    found = {n: scopes_in_roles(roles).get(db) for n, roles in share_user_roles(couch).items()}
    return {n: scope for n, scope in found.items() if scope is not None}


def share_users(couch, dbs) -> dict[str, set[str]]:
    """Share users that are members of each database."""
    return {person: members(couch, db) for person, db in dbs.items()}


def guard_scopes(couch, dbs) -> dict[str, set[str]]:
    """Share users with a scope in each database, for the write guard to read."""
    return {person: set(scopes(couch, db)) for person, db in dbs.items()}


def holds_password(couch, name: str, password: str) -> bool:
    """Whether the user's `_users` doc was hashed from `password`, checked here rather than
    by logging in: a login that CouchDB's credentials cache answers with the old password
    counts towards its lockout, and enough of them lock the user out for minutes."""
    user = couch.get(f"_users/org.couchdb.user:{name}")
    key = bytes.fromhex(user["derived_key"])
    derived = hashlib.pbkdf2_hmac(
        user.get("pbkdf2_prf", "sha1"),
        password.encode(),
        user["salt"].encode(),
        int(user["iterations"]),
        len(key),
    )
    return hmac.compare_digest(derived, key)


def assert_consistent(couch, state_db: str, dbs) -> Share | None:
    """Either one active share with all its parts, or no parts at all. Returns the active one.

    An active share's user exists, is named in both databases and logs in with the password
    its replicator docs hold; without one, no share user is left anywhere.
    """
    shares = shares_of(couch, state_db)
    assert not [s for s in shares if s.status in (Status.PROVISIONING, Status.REVOKING)], shares
    assert not [s for s in shares if s.operation is not None], shares
    active = [s for s in shares if s.status is Status.ACTIVE]
    assert len(active) <= 1
    parts = broker_parts(couch, dbs)
    ids = {s.id for s in shares}
    users = {
        i
        for i in couch.all_docs("_users")
        if i.removeprefix("org.couchdb.user:sharing-broker-") in ids
    }
    if not active:
        assert parts == {"replications": set(), "db_sharing": set()}
        assert share_users(couch, dbs) == {person: set() for person in dbs}
        assert guard_scopes(couch, dbs) == {person: set() for person in dbs}
        assert users == set()
        return None
    share = active[0]
    name = f"sharing-broker-{share.id}"
    assert share_users(couch, dbs) == {person: {name} for person in dbs}
    assert guard_scopes(couch, dbs) == {person: {name} for person in dbs}
    assert users == {f"org.couchdb.user:{name}"}
    for doc_id in parts["replications"]:
        basic = couch.get(f"_replicator/{doc_id}")["source"]["auth"]["basic"]
        assert basic["username"] == name
        assert holds_password(couch, name, basic["password"]), "a stale replicator password"
    assert parts["replications"] == set(replication_ids(share))
    assert parts["db_sharing"] == ({DB_SHARING} if share.access is Access.READ_WRITE else set())
    pair = couch.get(f"{state_db}/{pair_id(share.owner, share.recipient)}")
    assert pair["share_id"] == share.id
    return share
