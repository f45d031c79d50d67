"""Live read-write shares written straight into CouchDB, as the broker would have made them.

Creating 10,000 shares through the API takes the better part of an hour on the bench's
machine; written directly they take minutes. Each share gets what a create through the
broker leaves: two Inventory databases (one shard each), each with its `_security` (a
member and the share role), the fixed guard and its docs; the owner's `db_sharing`; the
share user with its roles; both replicator docs, held for on-change mode; the
registrations, the sealed share record and its pair claim in the state database. The
broker's own code makes each body.
The recipient holds what crossed already (the owner's collection, its item and
`db_sharing`, at the owner's revisions), as in a deployment that has run for a while: the
broker's first pass over every replication finds nothing to carry. Seed before the broker
starts.
"""

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bench.stack import collection_of, config_uuid, inventory_docs
from service.config import DEFAULT_SERVER
from service.sharing.core.model import (
    Access,
    Database,
    Selection,
    Share,
    Status,
    next_share_id,
    now_iso,
)
from service.sharing.core.seal import Seal
from service.sharing.core.store import (
    CONFLICTS_DDOC_NAME,
    PAGE_INDEX,
    STATS_DDOC_NAME,
    pair_id,
)
from service.sharing.crossing.selectors import Scope
from service.sharing.placing.credentials import Credentials, new_password, share_user_name
from service.sharing.placing.guard import guard_doc, member_role
from service.sharing.placing.parts import DB_SHARING, O2R, R2O, SHARE_USER, Target, wanted_parts
from tests.servers.admin import AdminHttp

BATCH = 500  # records and replicator docs written per request


class Seeder:
    """Seeds shares `first` to `first + count - 1`: share `i` from database `2i` to `2i + 1`,
    named `prefix-NNNNN`, as `bench/scale.py` lays them out."""

    def __init__(self, couch: AdminHttp, state_db: str, seal: Seal, prefix: str):
        self.couch = couch
        self.state_db = state_db
        self.seal = seal
        self.prefix = prefix

    def name(self, n: int) -> str:
        return f"{self.prefix}-{n:05d}"

    def seed(
        self, first: int, count: int, clients: int, progress: Callable[[int], None]
    ) -> list[tuple[str, str]]:
        """Write the shares; return (owner db, recipient db) of each, in order."""
        records: list[dict] = []
        replications: list[dict] = []
        with ThreadPoolExecutor(clients) as pool:
            for done, (state, replicator) in enumerate(
                pool.map(self._share, range(first, first + count)), 1
            ):
                records += state
                replications += replicator
                progress(done)
        for db, docs in ((self.state_db, records), ("_replicator", replications)):
            for start in range(0, len(docs), BATCH):
                body = {"docs": docs[start : start + BATCH]}
                self.couch.request("POST", f"{db}/_bulk_docs", json=body).raise_for_status()
        return [(self.name(2 * i), self.name(2 * i + 1)) for i in range(first, first + count)]

    def _share(self, i: int) -> tuple[list[dict], list[dict]]:
        """Share `i`'s databases and user; return its state docs and replicator docs."""
        (owner_db, owner), (recipient_db, recipient) = (
            (self.name(n), config_uuid(n)) for n in (2 * i, 2 * i + 1)
        )
        selection = Selection([collection_of(owner)])
        share_id = next_share_id(self.state_db, owner, recipient, None)
        share = Share.new(owner, recipient, Access.READ_WRITE, selection, share_id)
        share.status = Status.ACTIVE
        scope = Scope(selection.collections)
        target = Target(Access.READ_WRITE, scope, owner_db, recipient_db, scope)
        credentials = Credentials(share_user_name(share.id), new_password(), fresh=True)
        urls = {DEFAULT_SERVER: self.couch.url}
        parts = wanted_parts(share, target, credentials, urls, self.state_db, continuous=False)
        owners = [*map(_revised, inventory_docs(owner)), _revised(parts[DB_SHARING].body)]
        crossed = owners[1:]  # the collection, its item and db_sharing: as if replicated
        self._database(owner_db, owners)
        self._database(recipient_db, [*map(_revised, inventory_docs(recipient)), *crossed])
        user = parts[SHARE_USER].body
        self.couch.request("PUT", f"_users/{user['_id']}", json=user).raise_for_status()
        stamp = now_iso()
        state = [
            self.seal.signed(Database(uid, db, DEFAULT_SERVER, stamp).to_doc())
            for db, uid in ((owner_db, owner), (recipient_db, recipient))
        ]
        state += [
            self.seal.signed(share.to_doc()),
            {"_id": pair_id(owner, recipient), "type": "pair", "share_id": share.id},
        ]
        return state, [parts[O2R].body, parts[R2O].body]

    def _database(self, db: str, docs: list[dict]) -> None:
        """The database, its members (its user and the share role), the guard, and `docs`
        at their own revisions."""
        self.couch.request("PUT", db, params={"q": "1"}).raise_for_status()  # small databases
        security = {"members": {"names": [db], "roles": [member_role(db)]}}
        self.couch.request("PUT", f"{db}/_security", json=security).raise_for_status()
        guard = guard_doc(db, self.state_db)
        self.couch.request("PUT", f"{db}/{guard['_id']}", json=guard).raise_for_status()
        body = {"docs": docs, "new_edits": False}
        self.couch.request("POST", f"{db}/_bulk_docs", json=body).raise_for_status()


def _revised(doc: dict) -> dict:
    """`doc` at a revision of its own, to write as is in both databases it is in."""
    return {**doc, "_rev": f"1-{uuid.uuid4().hex}"}


def catch_up_indexes(couch: AdminHttp, state_db: str) -> float:
    """Bring the state database's indexes up to date after seeding, as the first read
    after a bulk import would; return the seconds it took.

    A list page read first would wait for them under the broker's 10 s read timeout: at
    10,000 shares, with the replicator reading the 20,000 new replicator docs at the same
    time, that answered 503.
    """
    start = time.perf_counter()
    find = {
        "selector": {"type": "share"},
        "use_index": [PAGE_INDEX["ddoc"], PAGE_INDEX["name"]],
        "limit": 1,
    }
    couch.request("POST", f"{state_db}/_find", json=find).raise_for_status()
    for ddoc, view in ((STATS_DDOC_NAME, "by_status"), (CONFLICTS_DDOC_NAME, "conflicts")):
        path = f"{state_db}/_design/{ddoc}/_view/{view}"
        couch.request("GET", path, params={"limit": 0}).raise_for_status()
    return time.perf_counter() - start
