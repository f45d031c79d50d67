"""A CouchDB user per share, with its password.

Replicator docs authenticate as this user, never as the broker's service account. Its only
roles are the share's own: membership in each of the share's two databases, and its scope
there (see `guard`), so it may read and write nowhere else.
"""

import hashlib
import secrets
from dataclasses import dataclass, field

from service.couch import CouchClient, DocumentConflict, NotFound
from service.sharing.placing.siblings import read_alone

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
