"""The broker's state in CouchDB: database registrations, share records and pair claims.

Any number of broker replicas share this state. Writes carry `_rev`, so a concurrent change
shows up as a conflict instead of being overwritten. On a cluster the state database keeps
one shard and the cluster's copies, and there two writers of one doc through two nodes may
both be told yes. What they write converges instead: a new share's id follows from its pair
(`model.next_share_id`), so two creates of one pair write one share, and reconcile settles
each doc left with two branches by a stated rule (`settle_conflict`).
"""

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import suppress

from service.couch import CouchClient, CouchError, CouchUnavailable, DocumentConflict, NotFound
from service.sharing.core.errors import ConflictError, NotFoundError, PreconditionFailed
from service.sharing.core.model import (
    LIVE_STATUSES,
    Database,
    Event,
    Share,
    Status,
    next_share_id,
    now_iso,
)
from service.sharing.core.revisions import generation, rank, replayed, winner
from service.sharing.core.seal import SEALED_TYPES, Seal

log = logging.getLogger(__name__)
KEYS_KEPT_HOURS = 24  # how long an Idempotency-Key's answer is kept for replay
# A request runs for at most the server's timeout (30 s by default); a key still started
# long after that belonged to one that died, and a retry may take it.
ABANDONED_KEY_MINUTES = 10
KEY_FINISH_TRIES = 3  # reads and writes of a key's answer while another claimant writes it

# How long a pair claim without its share record counts as a create still under way.
CLAIM_GRACE_SECONDS = 60
# The state database is the broker's alone: only server admins may read or write it.
ADMINS_ONLY = {
    "admins": {"names": [], "roles": ["_admin"]},
    "members": {"names": [], "roles": ["_admin"]},
}

# Pages of records of one type in `_id` order: constant work per page at any size.
PAGE_INDEX = {
    "index": {"fields": ["type", "_id"]},
    "ddoc": "sharing-broker-pages",
    "name": "type-id",
    "type": "json",
}
# Active shares with rules, for the rule follower: an index that holds only shares with
# rules, so that a pass costs the same whatever the number of other shares.
RULED_INDEX = {
    "index": {
        "fields": ["status", "_id"],
        "partial_filter_selector": {"type": "share", "rules": {"$type": "array"}},
    },
    "ddoc": "sharing-broker-ruled",
    "name": "ruled-status-id",
    "type": "json",
}
RULED_PAGE = 200


class StateStore:
    """Reads and writes broker records in the state database."""

    def __init__(self, couch: CouchClient, db: str, seal: Seal):
        self.couch = couch
        self.db = db
        self.seal = seal
        self._indexed = False
        self._locked = False

    def ensure(self) -> None:
        """Create the state database and its index if they do not exist yet, and lock it to
        server admins (once per process)."""
        try:
            self.couch.get(self.db)
        except NotFound:
            with suppress(DocumentConflict):  # another replica created it first
                self.couch.put(self.db, params=ONE_SHARD)
            self._locked = self._indexed = False  # a new database: lock and index it
        if not self._locked:
            if self.exposure() is not None:
                self.couch.put(self.db, "_security", json=ADMINS_ONLY)
            self._locked = True
        if not self._indexed:
            for index in (PAGE_INDEX, RULED_INDEX):
                self.couch.post(self.db, "_index", json=index)  # idempotent
            for ddoc in (STATS_DDOC, CONFLICTS_DDOC):
                self._keep_design(ddoc)
            self._reseal_unbound()
            self._indexed = True

    def _keep_design(self, ddoc: dict) -> None:
        """Write a design doc of the broker's unless it is there as it should be."""
        current = self.get_doc(ddoc["_id"])
        if current is not None and {**current, **ddoc} == current:
            return
        with suppress(DocumentConflict):  # another replica wrote it first
            self.couch.put(self.db, ddoc["_id"], json={**ddoc, **_rev_of(current)})

    def _reseal_unbound(self) -> None:
        """Seal again, bound to their revision, the records an earlier version sealed
        without one; once per state database.

        That it is done is kept in a design doc: only a server admin may write one, so a
        writer of an exposed state database cannot make a later start reseal a record it
        wrote back.
        """
        if self.get_doc(SEALS_DDOC["_id"]) is not None:
            return
        for doc_type in SEALED_TYPES:
            after = None
            while True:
                docs, after = self._page(doc_type, [], after, 200)
                for doc in docs:
                    if not self.seal.valid(doc) and self.seal.valid_unbound(doc):
                        with suppress(DocumentConflict):  # resealed by another replica
                            self._put_sealed(doc["_id"], doc)
                if after is None:
                    break
        with suppress(DocumentConflict):
            self.couch.put(self.db, SEALS_DDOC["_id"], json=SEALS_DDOC)

    def exposure(self) -> str | None:
        """Why someone besides the server admins can read the state database, or None.

        A share record read there tells who shares with whom; one written there would be
        provisioned by reconcile.
        """
        security = self.couch.get(self.db, "_security")
        members = security.get("members") or {}
        if not members.get("names") and not members.get("roles"):
            return "its _security lists no members, so every CouchDB user may read and write it"
        if security != {**security, **ADMINS_ONLY}:
            return f"its _security lets others in: {json.dumps(security, sort_keys=True)}"
        return None

    def conflicts(self) -> dict[str, list[str]]:
        """Doc id -> its losing revisions, for every doc of the state database that has
        conflicting branches."""
        return {
            row["id"]: row["value"]["conflicts"]
            for row in self._branched()
            if row["value"]["conflicts"]
        }

    def replayed(self) -> dict[str, str]:
        """Record id -> its winning revision, for each record whose winner is an earlier
        state grafted back after its later branch was deleted."""
        return {
            row["id"]: row["value"]["rev"]
            for row in self._branched()
            if row["id"].startswith(SEALED_PREFIXES)
            and replayed(row["value"]["rev"], row["value"]["deleted"])
        }

    def _branched(self) -> list[dict]:
        """The rows of the docs with more than one leaf, live or deleted."""
        view = ("_design", CONFLICTS_DDOC_NAME, "_view", "conflicts")
        return self.couch.get(self.db, *view)["rows"]

    def restore_replayed(self, doc_id: str, rev: str) -> bool:
        """Write back the latest state the broker sealed, on the later branch it was
        deleted from, and delete the replayed winner `rev`; if that state can no longer be
        read (compacted), only delete `rev`. Return whether it was restored; raise
        DocumentConflict if the record changed since it was found.

        The latest sealed state is the parent of the highest deleted leaf: the later
        branch, before it was deleted. Its seal is bound to its revision, so no other
        parent passes for it.
        """
        body = {"docs": [{"id": doc_id}]}
        results = self.couch.post(self.db, "_bulk_get", json=body, params={"revs": "true"})
        leaves = [d["ok"] for d in results["results"][0]["docs"] if "ok" in d]
        deleted = [leaf for leaf in leaves if leaf.get("_deleted")]
        if not deleted:  # changed since it was found: the next pass judges it again
            raise DocumentConflict(409, "conflict", "changed meanwhile", f"GET {doc_id}")
        later = max(deleted, key=lambda leaf: generation(leaf["_rev"]))
        path = later["_revisions"]
        parent = f"{path['start'] - 1}-{path['ids'][1]}" if len(path["ids"]) > 1 else None
        try:
            latest = self.couch.get(self.db, doc_id, params={"rev": parent}) if parent else {}
        except NotFound:
            latest = {}
        restored = latest.get("type") in SEALED_TYPES and self.seal.valid(latest)
        if restored:
            self._put_sealed(doc_id, {**latest, "_rev": later["_rev"]})
        self.drop_branches(doc_id, [rev])
        return restored

    def settle_conflict(self, doc_id: str, losers: list[str]) -> bool:
        """Keep one branch of a conflicted doc and delete the `losers`; return whether a
        losing branch's state was kept.

        CouchDB's winner stays, save for one rule: a stop wins over a change. A share
        record that a losing branch stops (revoked, declined, expired, or revoking) while
        the winner goes on takes that stop: it is written, sealed, onto the winning branch,
        so that no later state is deleted from under an earlier one.
        """
        stopped = None
        live = self._live_leaves(doc_id) if doc_id.startswith("share:") else []
        if live:
            kept = winner(live)
            chosen = max(live, key=lambda leaf: (self.seal.valid(leaf), _stop(leaf), rank(leaf)))
            if self.seal.valid(chosen) and _stop(chosen) > _stop(kept):
                stopped = Share.from_doc({**chosen, "_rev": kept["_rev"]}).to_doc()
                self._put_sealed(doc_id, stopped)
        self.drop_branches(doc_id, losers)
        return stopped is not None

    def _live_leaves(self, doc_id: str) -> list[dict]:
        leaves = self.couch.get(self.db, doc_id, params={"open_revs": "all"})
        return [r["ok"] for r in leaves if "ok" in r and not r["ok"].get("_deleted")]

    def drop_branches(self, doc_id: str, revs: list[str]) -> None:
        """Delete these losing branches of a doc; its winning revision stays."""
        for rev in revs:
            with suppress(NotFound, DocumentConflict):  # gone already
                self.couch.delete(self.db, doc_id, params={"rev": rev})

    # Database registrations

    def get_database(self, config_uuid: str) -> Database | None:
        return self.get_databases({config_uuid}).get(config_uuid)

    def get_databases(self, config_uuids: set[str]) -> dict[str, Database]:
        """The registrations of these Configuration UUIDs that exist, in one request."""
        return self._databases_and(config_uuids, [])[0]

    def get_databases_undisputed(
        self, config_uuids: set[str], also: str | None = None
    ) -> tuple[dict[str, Database], dict[str, dict], dict | None]:
        """The registrations of these Configuration UUIDs, the disputes of those that
        have one, by UUID, and the doc `also` of the state database (None if missing or not
        asked), in one request."""
        disputes = [_dispute_id(u) for u in sorted(config_uuids)]
        databases, found = self._databases_and(config_uuids, disputes + ([also] if also else []))
        other = found.pop(also, None) if also else None
        return databases, {doc["config_uuid"]: doc for doc in found.values()}, other

    def get_databases_and(
        self, config_uuids: set[str], doc_id: str | None
    ) -> tuple[dict[str, Database], dict | None]:
        """The registrations of these Configuration UUIDs, and the doc `doc_id` of the
        state database (None if missing), in one request."""
        databases, found = self._databases_and(config_uuids, [doc_id] if doc_id else [])
        return databases, found.get(doc_id)

    def _databases_and(
        self, config_uuids: set[str], doc_ids: list[str]
    ) -> tuple[dict[str, Database], dict[str, dict]]:
        """The sealed registrations of these UUIDs, and those of the other docs `doc_ids`
        that exist (by id), read in one request."""
        found = self._fetch([Database.doc_id(u) for u in sorted(config_uuids)] + doc_ids)
        others = {doc["_id"]: doc for doc in found if doc["_id"] in doc_ids}
        registrations = [doc for doc in found if doc["_id"] not in others]
        databases = {d.config_uuid: d for d in map(Database.from_doc, self._sealed(registrations))}
        return databases, others

    def unknown_servers(self, known: set[str]) -> set[str]:
        """The servers that registrations name, besides these: a grouped view names the
        servers in one small read, whatever the number of registrations (`/readyz` asks),
        and only a server not known here has its registrations read, for their seals."""
        view = ("_design", STATS_DDOC_NAME, "_view", "servers")
        rows = self.couch.get(self.db, *view, params={"group": "true"})["rows"]
        unknown = set()
        for server in {row["key"] for row in rows} - known:
            docs, _ = self._page("database", [{"server": server}], None, 100)
            unknown |= {d["server"] for d in self._sealed(docs)}
        return unknown

    def databases_at(self, server: str, database: str) -> list[Database]:
        """The registrations of this database, under whatever UUIDs."""
        at = [{"database": database}, {"server": server}]
        docs, _ = self._page("database", at, None, 100)
        return [Database.from_doc(d) for d in self._sealed(docs)]

    def add_database(self, database: Database, event: Event) -> Database:
        """Store a registration, and `event` with it; if the UUID is taken, return the one
        stored (and record no event)."""
        doc_id, doc = Database.doc_id(database.config_uuid), database.to_doc()
        try:
            self._put_sealed_with_event(doc, event)
            return database
        except DocumentConflict:
            current = self.get_doc(doc_id)
        if current is None:  # removed meanwhile
            return self.add_database(database, event)
        if self.seal.valid(current):
            return Database.from_doc(current)
        log.warning("registration %s was not written by this broker; replaced", doc_id)
        self._put_sealed_with_event({**doc, "_rev": current["_rev"]}, event)
        return database

    def remove_database(self, config_uuid: str, event: Event) -> None:
        """Delete a registration, and record `event` with it."""
        doc_id = Database.doc_id(config_uuid)
        try:
            doc = self.couch.get(self.db, doc_id)
        except NotFound:
            raise NotFoundError.unregistered(config_uuid) from None
        self._write_with_event(_tombstone(doc), event)

    def list_databases(self, after: str | None, limit: int) -> tuple[list[Database], str | None]:
        docs, next_cursor = self._page("database", [], after, limit)
        return [Database.from_doc(d) for d in self._sealed(docs)], next_cursor

    # Disputed Configuration UUIDs: claimed by a second database

    def record_dispute(self, config_uuid: str, database: str, event: Event) -> None:
        """Note that `database` also claims `config_uuid`, and record `event` with a new
        claim; kept until an admin removes the registration."""

        def add_claim(current: dict | None) -> dict | None:
            dispute = current or {"type": "dispute", "config_uuid": config_uuid, "claims": []}
            if database in dispute["claims"]:
                return None
            return {"since": now_iso(), **dispute, "claims": [*dispute["claims"], database]}

        self.update_doc(_dispute_id(config_uuid), add_claim, event)

    def drop_claims(self, config_uuid: str, claims: list[str]) -> None:
        """Drop void claims on a UUID; the dispute goes with its last claim."""

        def without(current: dict | None) -> dict | None:
            if current is None:
                return None
            kept = [c for c in current["claims"] if c not in claims]
            return {**current, "claims": kept} if kept != current["claims"] else None

        self.update_doc(_dispute_id(config_uuid), without)
        current = self.get_doc(_dispute_id(config_uuid))
        if current is not None and not current["claims"]:
            self.clear_dispute(config_uuid)

    def disputes(self) -> list[dict]:
        docs, _ = self._page("dispute", [], None, 1000)
        return [{k: d[k] for k in ("config_uuid", "claims", "since")} for d in docs]

    def dismiss_dispute(self, config_uuid: str, event: Event) -> None:
        """Drop every claim on the UUID, and record `event` with it; 404 if it has none."""
        doc = self.get_doc(_dispute_id(config_uuid))
        if doc is None:
            raise NotFoundError(f"no database claims {config_uuid} besides its holder")
        try:
            self._write_with_event(_tombstone(doc), event)
        except DocumentConflict:
            if self.get_doc(_dispute_id(config_uuid)) is not None:  # claimed again meanwhile
                raise ConflictError(
                    f"the claims on {config_uuid} changed meanwhile: list them, then dismiss"
                ) from None

    def clear_dispute(self, config_uuid: str) -> None:
        with suppress(NotFound, DocumentConflict):
            doc = self.couch.get(self.db, _dispute_id(config_uuid))
            self.couch.delete(self.db, doc["_id"], params={"rev": doc["_rev"]})

    # Share records

    def get_share(self, share_id: str) -> Share:
        found = self.get_shares({share_id})
        if share_id not in found:
            raise NotFoundError(f"no share {share_id}")
        return found[share_id]

    def get_doc(self, doc_id: str) -> dict | None:
        """Any doc of the state database by its id, or None."""
        found = self._fetch([doc_id])
        return found[0] if found else None

    def update_doc(
        self,
        doc_id: str,
        change: Callable[[dict | None], dict | None],
        event: Event | None = None,
    ) -> bool:
        """Write `change(current)` over a doc of the state database (`current` is None if
        there is none; a None change writes nothing), reading again after a conflict; with
        `event`, the event is written in the same request.
        Return whether it was written; after three conflicts in a row it gives up, and
        says so in the log."""
        for _ in range(3):
            current = self.get_doc(doc_id)
            wanted = change(current)
            if wanted is None:
                return False
            wanted = {**wanted, "_id": doc_id}
            if current is not None:
                wanted["_rev"] = current["_rev"]
            try:
                if event is None:
                    self.couch.put(self.db, doc_id, json=wanted)
                else:
                    self._write_with_event(wanted, event)
                return True
            except DocumentConflict:
                continue
        log.warning("%s not written: it kept changing under three writes in a row", doc_id)
        return False

    def get_shares(self, share_ids: set[str]) -> dict[str, Share]:
        """The share records with these ids that exist, in one request."""
        found = self._fetch([Share.doc_id(i) for i in sorted(share_ids)])
        return {s.id: s for s in map(Share.from_doc, self._sealed(found))}

    def save_share(self, share: Share, *events: Event) -> Share:
        """Write the record, and `events` with it in one request; a stale `_rev` raises
        PreconditionFailed (and the events are taken back)."""
        try:
            if not events:
                share.rev = self._put_sealed(Share.doc_id(share.id), share.to_doc())
            else:
                share.rev = self._put_sealed_with_event(share.to_doc(), *events)
        except DocumentConflict:
            raise PreconditionFailed(f"share {share.id} was changed meanwhile") from None
        return share

    def delete_share(self, share: Share) -> None:
        self.couch.delete(self.db, Share.doc_id(share.id), params={"rev": share.rev})

    def list_shares(
        self, conditions: list[dict], after: str | None, limit: int
    ) -> tuple[list[Share], str | None]:
        """A page of shares matching every Mango condition given."""
        docs, next_cursor = self._page("share", conditions, after, limit)
        return [Share.from_doc(d) for d in self._sealed(docs)], next_cursor

    def each_share(self, conditions: list[dict]) -> Iterator[Share]:
        """Every share matching the conditions, page by page."""
        cursor = None
        while True:
            page, cursor = self.list_shares(conditions, cursor, 200)
            yield from page
            if cursor is None:
                return

    def active_ruled_shares(self) -> Iterator[Share]:
        """Every active share with rules, a page at a time, through their own index."""
        after = ""
        while True:
            selector = {
                "type": "share",
                "status": str(Status.ACTIVE),
                "rules": {"$type": "array"},
                "_id": {"$gt": after},
            }
            query = {
                "selector": selector,
                "sort": [{"status": "asc"}, {"_id": "asc"}],
                "use_index": [RULED_INDEX["ddoc"], RULED_INDEX["name"]],
                "limit": RULED_PAGE,
            }
            docs = self.couch.post(self.db, "_find", json=query)["docs"]
            yield from map(Share.from_doc, self._sealed(docs))
            if len(docs) < RULED_PAGE:
                return
            after = docs[-1]["_id"]

    def count_shares(
        self, config_uuid: str, which: dict, role: str | None = None, up_to: int = 1
    ) -> int:
        """How many shares matching the selector `which` the UUID takes part in (as `role`,
        or either), counting up to `up_to`."""
        party = (
            {role: config_uuid}
            if role
            else {"$or": [{"owner": config_uuid}, {"recipient": config_uuid}]}
        )
        page, _ = self.list_shares([party, which], None, up_to)
        return len(page)

    # Pair claims: at most one live share per owner -> recipient, and its next share's id

    def open_pair(self, owner: str, recipient: str, current: dict | None) -> dict:
        """The claim a new share of the pair writes over the `current` one (as read with
        `Registry.new_pair`): it names the pair's next share id, which follows from the
        share the claim names now. Raise ConflictError if a live share holds the pair."""
        doc_id = pair_id(owner, recipient)
        if current is not None and self._holds(current):
            raise _pair_taken(current)
        previous = current["share_id"] if current else None
        share_id = next_share_id(self.db, owner, recipient, previous)
        claim = {"_id": doc_id, "type": "pair", "share_id": share_id, "claimed_at": now_iso()}
        return {**claim, **_rev_of(current)}

    def claim_and_save(self, share: Share, claim: dict) -> None:
        """Write the pair's `claim` (from `open_pair`) and the share's record in one
        request; raise ConflictError if another request claimed the pair meanwhile.

        Two requests that opened the pair alike name the same share: on one copy the
        second finds the claim and the record written, and on a cluster both may be told
        yes, which leaves one share with two branches for reconcile to settle.
        """
        record = self.seal.signed(share.to_doc())
        claimed, saved = self.couch.post(self.db, "_bulk_docs", json={"docs": [claim, record]})
        if claimed.get("ok") and saved.get("ok"):
            share.rev = self._settle_seal(record, saved["rev"])
            return
        if saved.get("ok"):  # the claim was refused: take back the record beside it
            self.couch.delete(self.db, saved["id"], params={"rev": saved["rev"]})
        elif saved.get("error") != "conflict":  # refused, not written by another request
            if claimed.get("ok"):
                self.release_pair(share)
            raise CouchError(403, saved["error"], saved.get("reason", ""), f"POST /{self.db}")
        raise _pair_taken(self.get_doc(claim["_id"]) or claim)

    def release_pair(self, share: Share) -> None:
        """Mark the pair free if `share` still holds it. The claim stays, naming the share,
        so the pair's next share gets an id of its own. A claim left unmarked does no harm:
        a share that is not live holds nothing."""
        doc_id = pair_id(share.owner, share.recipient)
        try:
            current = self.couch.get(self.db, doc_id)
            if current["share_id"] == share.id and "released_at" not in current:
                self.couch.put(self.db, doc_id, json={**current, "released_at": now_iso()})
        except (NotFound, DocumentConflict):
            pass  # released already, or claimed by a newer share
        except CouchUnavailable:
            log.warning("share %s: pair claim not marked free; a new claim replaces it", share.id)

    def _holds(self, claim: dict) -> bool:
        """Whether a pair claim still stands: its share is live, or its share record is not
        written yet because the create is under way (a fresh claim).

        A claim older than a request can take, with no share record, was left by a crash.
        """
        if "released_at" in claim:
            return False
        try:
            return self.get_share(claim["share_id"]).current_status in LIVE_STATUSES
        except NotFoundError:
            claimed_at = claim.get("claimed_at")
            return bool(claimed_at) and claimed_at > now_iso(-CLAIM_GRACE_SECONDS)

    def count_by_status(self) -> dict[str, int]:
        """How many share records are in each status, from a reduce view: one request."""
        view = ("_design", STATS_DDOC_NAME, "_view", "by_status")
        rows = self.couch.get(self.db, *view, params={"group": "true"})["rows"]
        return {row["key"]: row["value"] for row in rows}

    # Idempotency keys: the first response to a key, kept for replay

    def claim_key(self, key_id: str, fingerprint: str) -> dict | None:
        """Start a keyed request; None if this call claimed it, else the record already
        there. A record older than `KEYS_KEPT_HOURS` is expired, and one still started
        after `ABANDONED_KEY_MINUTES` was left by a request that died: either is taken over."""
        doc = {
            "_id": key_id,
            "type": "idempotency",
            "state": "started",
            "fingerprint": fingerprint,
            "created_at": now_iso(),
        }
        for _ in range(2):
            try:
                self.couch.put(self.db, key_id, json=doc)
                return None
            except DocumentConflict:
                found = self.couch.get(self.db, key_id)
            if _key_holds(found):
                return found
            doc["_rev"] = found["_rev"]  # claimed anew, unless another got it first
        return found

    def remove_expired_keys(self) -> int:
        """Delete the idempotency records older than `KEYS_KEPT_HOURS`; return how many."""
        cutoff, removed = _hours_ago(KEYS_KEPT_HOURS), 0
        ids = {"$gt": "idempotency:", "$lt": "idempotency:\ufff0"}
        selector = {"type": "idempotency", "_id": ids, "created_at": {"$lt": cutoff}}
        index = [PAGE_INDEX["ddoc"], PAGE_INDEX["name"]]
        while True:
            body = {"selector": selector, "fields": ["_id", "_rev"], "limit": 500}
            body["use_index"] = index
            docs = self.couch.post(self.db, "_find", json=body)["docs"]
            if not docs:
                return removed
            gone = [_tombstone(d) for d in docs]
            results = self.couch.post(self.db, "_bulk_docs", json={"docs": gone})
            done = sum(1 for result in results if result.get("ok"))
            if not done:  # each changed meanwhile: the next pass sees them again
                return removed
            removed += done

    def finish_key(self, key_id: str, response: dict) -> None:
        """Keep the response of a keyed request for replay.

        On a cluster two replicas may both be told they claimed a key, and both run the
        request. The first answer kept stays (both ran the same request), and the key's
        other branches go, so that every repeat gets that one answer.
        """
        for _ in range(KEY_FINISH_TRIES):
            current = self.couch.get(self.db, key_id, params={"conflicts": "true"})
            self.drop_branches(key_id, current.pop("_conflicts", []))
            if current["state"] == "done":
                return
            kept = {**current, "state": "done", "response": response}
            with suppress(DocumentConflict):  # the other claimant wrote meanwhile: read again
                self.couch.put(self.db, key_id, json=kept)
                return
        raise DocumentConflict(409, "conflict", "the key kept changing", f"finish {key_id}")

    def drop_key(self, key_id: str) -> None:
        """Forget a keyed request that failed, so that it may be tried again."""
        with suppress(NotFound, DocumentConflict):
            current = self.couch.get(self.db, key_id)
            self.couch.delete(self.db, key_id, params={"rev": current["_rev"]})

    # The audit trail

    def add_event(self, event: Event) -> None:
        doc = event.to_doc()
        self.couch.put(self.db, doc["_id"], json=doc)

    def events(self, share_id: str) -> list[Event]:
        """The share's events, oldest first."""
        prefix = f"event:{share_id}:"
        params = {
            "include_docs": "true",
            "startkey": json.dumps(prefix),
            "endkey": json.dumps(prefix + "\ufff0"),
        }
        rows = self.couch.get(self.db, "_all_docs", params=params)["rows"]
        return [Event.from_doc(row["doc"]) for row in rows]

    # Other sealed records (webhooks)

    def put_sealed_doc(self, doc: dict) -> str:
        """Write a sealed record over its `_rev` (none: a new one); return its revision."""
        return self._put_sealed(doc["_id"], doc)

    def get_sealed_doc(self, doc_id: str) -> dict | None:
        found = self._sealed(self._fetch([doc_id]))
        return found[0] if found else None

    def sealed_docs(self, doc_type: str) -> list[dict]:
        """Every sealed record of a type, page by page."""
        found, after = [], None
        while True:
            docs, after = self._page(doc_type, [], after, 200)
            found += self._sealed(docs)
            if after is None:
                return found

    def unsealed(self, doc_type: str) -> Iterator[str]:
        """The ids of the records of a type whose seal does not match, page by page."""
        after = None
        while True:
            docs, after = self._page(doc_type, [], after, 200)
            yield from (doc["_id"] for doc in docs if not self.seal.valid(doc))
            if after is None:
                return

    def _sealed(self, docs: list[dict]) -> list[dict]:
        """The records the broker wrote itself; others are treated as absent."""
        forged = [doc["_id"] for doc in docs if not self.seal.valid(doc)]
        if forged:
            log.warning("records not sealed by this broker, refused: %s", ", ".join(forged))
        return [doc for doc in docs if self.seal.valid(doc)]

    def _put_sealed(self, doc_id: str, doc: dict) -> str:
        """Write `doc` sealed over its `_rev` (none: a new doc); return the new revision."""
        sealed = self.seal.signed(doc)
        return self._settle_seal(sealed, self.couch.put(self.db, doc_id, json=sealed)["rev"])

    def _put_sealed_with_event(self, doc: dict, *events: Event) -> str:
        """Write `doc` sealed, and `events` with it in one request; return the doc's new
        revision (see `_write_with_event`)."""
        sealed = self.seal.signed(doc)
        return self._settle_seal(sealed, self._write_with_event(sealed, *events))

    def _write_with_event(self, doc: dict, *events: Event) -> str:
        """Write `doc` and `events` in one request; return the doc's new revision. A refused
        doc takes its events back, which would tell of outcomes that did not happen; a
        conflict raises DocumentConflict."""
        docs = [doc, *(event.to_doc() for event in events)]
        record, *written = self.couch.post(self.db, "_bulk_docs", json={"docs": docs})
        if not record.get("ok"):
            for kept in (row for row in written if row.get("ok")):
                with suppress(CouchError, CouchUnavailable):
                    self.couch.delete(self.db, kept["id"], params={"rev": kept["rev"]})
            conflict = record.get("error") == "conflict"
            error, status = (DocumentConflict, 409) if conflict else (CouchError, 403)
            raise error(status, record["error"], record.get("reason", ""), f"POST /{self.db}")
        for event, row in zip(events, written, strict=True):
            if not row.get("ok"):
                log.warning("%s: event %s not recorded", doc["_id"], event.action)
        return record["rev"]

    def _settle_seal(self, sealed: dict, rev: str) -> str:
        """The revision of a sealed record just written as `rev`.

        A new doc written over a deleted one is numbered past its tombstone, not as
        revision 1, so its seal does not hold: it is sealed again, for the next revision.
        """
        if generation(rev) == generation(sealed.get("_rev")) + 1:
            return rev
        unsealed = {k: v for k, v in sealed.items() if k != "seal"}
        return self._put_sealed(sealed["_id"], {**unsealed, "_rev": rev})

    def _fetch(self, keys: list[str]) -> list[dict]:
        """The docs with these ids that exist, in one request (none for no ids).

        Every leaf of each doc is read, so that a record grafted back at an earlier
        revision (see `revisions.replayed`) is refused here rather than acted on.
        """
        if not keys:
            return []
        body = {"docs": [{"id": key} for key in keys]}
        results = self.couch.post(self.db, "_bulk_get", json=body)["results"]
        found = []
        for result in results:
            _unless_unread(result)
            leaves = [d["ok"] for d in result["docs"] if "ok" in d]
            if not leaves:
                continue
            doc = winner(leaves)
            deleted = [leaf["_rev"] for leaf in leaves if leaf.get("_deleted")]
            if doc.get("_deleted"):
                continue
            if doc["_id"].startswith(SEALED_PREFIXES) and replayed(doc["_rev"], deleted):
                log.warning("record %s is an earlier state written back: refused", doc["_id"])
                continue
            found.append(doc)
        return found

    def _page(
        self, doc_type: str, conditions: list[dict], after: str | None, limit: int
    ) -> tuple[list[dict], str | None]:
        """One page of records of a type in `_id` order, and the cursor of the next page."""
        prefix = f"{doc_type}:"
        start = prefix + after if after else prefix
        in_range = {"_id": {"$gt": start, "$lt": prefix + "\ufff0"}}
        query = {
            "selector": {"$and": [{"type": doc_type}, in_range, *conditions]},
            "sort": [{"type": "asc"}, {"_id": "asc"}],
            "use_index": [PAGE_INDEX["ddoc"], PAGE_INDEX["name"]],
            "limit": limit + 1,
        }
        docs = self.couch.post(self.db, "_find", json=query)["docs"]
        if len(docs) <= limit:
            return docs, None
        docs = docs[:limit]
        return docs, docs[-1]["_id"].removeprefix(prefix)


# One shard, with the cluster's own number of copies: the feed reads `_changes` in one
# order per copy, not interleaved from several shards.
ONE_SHARD = {"q": "1"}
STOPS = {Status.REVOKED: 2, Status.DECLINED: 2, Status.EXPIRED: 2, Status.REVOKING: 1}
STATS_DDOC_NAME = "sharing-broker-stats"
CONFLICTS_DDOC_NAME = "sharing-broker-conflicts"
CONFLICTS_DDOC = {
    "_id": f"_design/{CONFLICTS_DDOC_NAME}",
    "language": "javascript",
    "views": {
        "conflicts": {
            "map": (
                "function (doc) {"
                " var live = doc._conflicts || [], deleted = doc._deleted_conflicts || [];"
                " if (live.length || deleted.length) {"
                " emit(null, {rev: doc._rev, conflicts: live, deleted: deleted}); } }"
            )
        }
    },
}
# That the records are sealed bound to their revision: a design doc, which only a server
# admin may write.
SEALS_DDOC = {"_id": "_design/sharing-broker-seals", "language": "javascript", "seal": 2}
SEALED_PREFIXES = tuple(f"{doc_type}:" for doc_type in SEALED_TYPES)
STATS_DDOC = {
    "_id": f"_design/{STATS_DDOC_NAME}",
    "language": "javascript",
    "views": {
        "by_status": {
            "map": "function (doc) { if (doc.type === 'share') { emit(doc.status, null); } }",
            "reduce": "_count",
        },
        "servers": {
            "map": "function (doc) { if (doc.type === 'database') { emit(doc.server, null); } }",
            "reduce": "_count",
        },
    },
}


def _rev_of(doc: dict | None) -> dict:
    return {"_rev": doc["_rev"]} if doc else {}


def _unless_unread(result: dict) -> None:
    """Raise CouchUnavailable for a doc `_bulk_get` could not read (on a cluster, copies
    that did not answer in time), so that it is not taken for a missing one."""
    for entry in result["docs"]:
        error = entry.get("error") or {}
        if error and error.get("error") != "not_found":
            raise CouchUnavailable(f"POST /_bulk_get {result['id']}", error.get("error", "error"))


def _stop(leaf: dict) -> int:
    """How far a share record's status stops the share: 2 ended, 1 ending, 0 not."""
    return STOPS.get(leaf.get("status"), 0)


def _pair_taken(claim: dict) -> ConflictError:
    return ConflictError(
        f"share {claim['share_id']} already links this owner to this recipient;"
        " change it with PATCH",
        field="recipient",
    )


def pair_id(owner: str, recipient: str) -> str:
    """The id of the claim on an owner -> recipient pair."""
    return f"pair:{owner}--{recipient}"


def live_selector() -> dict:
    """Shares that hold their pair: live statuses, minus invitations past their time."""
    held = [str(s) for s in LIVE_STATUSES if s is not Status.PENDING]
    return {
        "$or": [
            {"status": {"$in": held}},
            {"$and": [{"status": "pending"}, {"expires_at": {"$gt": now_iso()}}]},
        ]
    }


def status_selector(status: Status) -> dict:
    """Shares whose current status is `status`, counting expired invitations right."""
    now = now_iso()
    if status is Status.PENDING:
        return {"$and": [{"status": "pending"}, {"expires_at": {"$gt": now}}]}
    if status is Status.EXPIRED:
        expired = {"$and": [{"status": "pending"}, {"expires_at": {"$lte": now}}]}
        return {"$or": [{"status": "expired"}, expired]}
    return {"status": str(status)}


def _tombstone(doc: dict) -> dict:
    """What deletes `doc` when written in `_bulk_docs`."""
    return {"_id": doc["_id"], "_rev": doc["_rev"], "_deleted": True}


def _dispute_id(config_uuid: str) -> str:
    return f"dispute:{config_uuid}"


def _key_holds(record: dict) -> bool:
    """Whether an idempotency record still answers for its key."""
    if record["state"] != "done" and record["created_at"] < _hours_ago(ABANDONED_KEY_MINUTES / 60):
        return False
    return record["created_at"] >= _hours_ago(KEYS_KEPT_HOURS)


def _hours_ago(hours: float) -> str:
    """The time that many hours back, as `now_iso()` writes it (so comparable as text)."""
    return now_iso(-round(hours * 3600))
