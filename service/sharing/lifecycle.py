"""The share lifecycle: invite, accept or decline, change and revoke.

Each operation is recorded so a crash can be finished, and audited.

Before acting, an operation is written into the share record with its target. Every step is
idempotent, so the record is not written again until the operation ends: a resume redoes
what is not marked done. When an operation fails, the record keeps the steps it got through
in `operation.done`. A failed create is rolled back; a failed change is brought back to what
the share was; a failed revoke is finished by revoking again. Whatever cannot be undone
stays visible in the record's `operation`.
"""

import base64
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from service.couch import CouchClient, CouchError, CouchUnavailable, NotFound
from service.sharing.branches import history
from service.sharing.credentials import Credentials, new_password, share_user_name
from service.sharing.errors import (
    ConflictError,
    InvalidRequest,
    PreconditionFailed,
    SharingError,
)
from service.sharing.guard import GUARD_ID
from service.sharing.model import (
    Access,
    Database,
    Direction,
    Event,
    Operation,
    Selection,
    Share,
    Status,
    now_iso,
)
from service.sharing.parts import (
    ACCESS_OWNER,
    ACCESS_RECIPIENT,
    O2R,
    R2O,
    SHARE_USER,
    SHARE_USER_AWAY,
    Part,
    Target,
    apply,
    converge,
    ensure_absent,
    ensure_current,
    wanted_parts,
)
from service.sharing.preview import Preview, matching_ids, preview
from service.sharing.purge import purge_doc, purge_shared_docs
from service.sharing.registry import Registry
from service.sharing.replicator import REPLICATOR_DB, replicator_doc_id
from service.sharing.rules import parse_rules
from service.sharing.scan import docs_with_prefix
from service.sharing.selectors import SHARED_PREFIXES, Scope, share_selector
from service.sharing.sites import Site, Sites
from service.sharing.store import StateStore
from service.sharing.together import run_together

log = logging.getLogger(__name__)
COUCH_FAILURES = (CouchError, CouchUnavailable)
UNCHANGED = object()


class ShareService:
    """Creates, changes and revokes shares."""

    def __init__(
        self,
        sites: Sites,
        store: StateStore,
        registry: Registry,
        invitation_ttl_seconds: int,
    ):
        self.sites = sites
        self.store = store
        self.registry = registry
        self.invitation_ttl_seconds = invitation_ttl_seconds
        self.replication_urls = {site.name: site.replication_url for site in sites}

    def create(
        self,
        owner: str,
        recipient: str,
        access: Access,
        selection: Selection,
        actor: str,
        accepted: bool,
    ) -> tuple[Share, dict[str, str]]:
        """Invite the recipient (`pending`), or provision at once when `accepted`.

        Return the share, and its parties' databases for the answer.
        """
        owner_db, recipient_db = self._checked_parties(owner, recipient, undisputed=True)
        selection = self._checked_selection(owner_db, recipient_db, selection)
        share = Share.new(owner, recipient, access, selection)
        if accepted:
            share.status = Status.PROVISIONING
            share.operation = Operation.toward("provision", access, selection)
        else:
            share.expires_at = now_iso(self.invitation_ttl_seconds)
        self.store.claim_and_save(share)
        with self._audit(share, "create", actor) as trail:
            if accepted:
                self._provision(share, None, (owner_db, recipient_db), trail)
        return share, _by_uuid(owner_db, recipient_db)

    def accept(self, share: Share, actor: str) -> tuple[Share, dict[str, str]]:
        """The recipient agrees: write the parts and start replicating.

        Return the share, and its parties' databases for the answer.
        """
        self._expire_if_due(share, actor)
        with self._audit(share, "accept", actor) as trail:
            self._require(share, Status.PENDING, "accepted")
            dbs = self.registry.parties(share.owner, share.recipient, undisputed=True)
            self._read_confirmed(dbs, [])
            share.status = Status.PROVISIONING
            share.operation = Operation.toward("provision", share.access, share.selection)
            self._save_transition(share)
            self._provision(share, Status.PENDING, dbs, trail)
        return share, _by_uuid(*dbs)

    def decline(self, share: Share, actor: str) -> Share:
        """The recipient refuses the invitation; nothing was written, nothing is."""
        self._expire_if_due(share, actor)
        with self._audit(share, "decline", actor) as trail:
            self._require(share, Status.PENDING, "declined")
            self._end(share, Status.DECLINED, trail)
        return share

    def patch(
        self,
        share: Share,
        etag: str,
        access: Access | None,
        collections: object,
        rules: object,
        actor: str,
    ) -> Share:
        """Change access, collections or rules; replicator docs, guards and `db_sharing` follow.

        `collections` and `rules` are `UNCHANGED` when not given.
        """
        if etag != share.etag:
            raise PreconditionFailed("the share changed since it was read; read it again")
        self._expire_if_due(share, actor)
        with self._audit(share, "patch", actor) as trail:
            if share.status not in (Status.PENDING, Status.ACTIVE):
                raise ConflictError(f"a share that is {share.status} cannot change")
            new_access, selection = self._patched(share, access, collections, rules)
            if share.status is Status.ACTIVE:
                self._change_parts(share, new_access, selection)
            share.adopt(new_access, selection)
            self._finish(share, share.status, trail)
        return share

    def preview(
        self,
        share: Share,
        access: Access | None = None,
        collections: object = UNCHANGED,
        rules: object = UNCHANGED,
    ) -> Preview:
        """What the share carries to the recipient, or would carry after such a patch."""
        access, selection = self._patched(share, access, collections, rules)
        dbs = self.registry.parties(share.owner, share.recipient)
        return self._preview(share, access, selection, dbs)

    def preview_new(
        self, owner: str, recipient: str, access: Access, selection: Selection
    ) -> Preview:
        """What a share made with these settings would carry; nothing is written."""
        dbs = self._checked_parties(owner, recipient)
        selection = self._checked_selection(*dbs, selection)
        return self._preview(Share.new(owner, recipient, access, selection), access, selection, dbs)

    def _patched(
        self, share: Share, access: Access | None, collections: object, rules: object
    ) -> tuple[Access, Selection]:
        """The access and selection a patch asks for, checked."""
        selection = Selection(
            share.collections if collections is UNCHANGED else collections,
            share.rules if rules is UNCHANGED else rules,
        )
        if selection != share.selection:
            dbs = self.registry.parties(share.owner, share.recipient)
            selection = self._checked_selection(*dbs, selection)
        return access or share.access, selection

    def _preview(self, share: Share, access: Access, selection: Selection, dbs) -> Preview:
        scope = self._scope(selection, access, dbs[0])
        selector = share_selector(
            share.owner, share.recipient, access, scope, Direction.OWNER_TO_RECIPIENT
        )
        return preview(self._couch(dbs[0]), dbs[0].database, selector)

    def revoke(
        self, share: Share, purge: bool, actor: str
    ) -> tuple[Share, dict[str, Database] | None]:
        """Stop replication, remove `db_sharing`, and purge the recipient's copies if asked.

        The owner revokes, the recipient leaves; an invitation is withdrawn. Revoking again
        finishes a revoke that stopped half-way. Return the share, and its parties' databases
        for the answer if they were read.
        """
        self._expire_if_due(share, actor)
        if share.status is Status.REVOKED:
            return share, None
        with self._audit(share, "revoke", actor) as trail:
            if share.status is Status.PENDING:
                self._end(share, Status.REVOKED, trail)
                return share, None
            if share.status not in (Status.PROVISIONING, Status.ACTIVE, Status.REVOKING):
                raise ConflictError(f"a share that is {share.status} cannot be revoked")
            if not (share.operation and share.operation.name == "revoke"):
                share.status = Status.REVOKING
                share.operation = Operation("revoke", None, None, purge=purge)
                self._save_transition(share)
            elif purge and not share.operation.purge:
                share.operation.purge = True
                self.store.save_share(share)
            dbs = self.registry.parties(share.owner, share.recipient)
            self._converge(share, None, None, dbs)
            with self._progress_kept(share):
                self._purge_recipient(share, dbs[1])
            self._end(share, Status.REVOKED, trail)
        return share, _by_uuid(*dbs)

    def resume(self, share: Share, actor: str) -> str:
        """Finish or roll back an operation a crash left in the record; say which."""
        operation = share.operation
        with self._audit(share, "resume", actor) as trail:
            if share.status is Status.REVOKING:
                self.revoke(share, purge=bool(operation and operation.purge), actor=actor)
                return "finished the revoke"
            if operation is None:
                return "nothing to do"
            if share.status is Status.PROVISIONING and operation.name == "roll back":
                share.status = Status.REVOKING
                self.revoke(share, purge=False, actor=actor)
                return "rolled back the provisioning"
            if share.status is Status.PROVISIONING:
                self._converge(share, share.access, share.selection)
                self._finish(share, Status.ACTIVE, trail)
                return "finished the provisioning"
            # An active share in the middle of a change, a rotation, or undoing a change.
            rotating = operation.name == "rotate"
            if rotating:
                operation.done.clear()  # a new password: every credential step again
                self._stop_replications(share, self.home(share))
            self._converge(share, operation.access, operation.selection, rotate=rotating)
            self._withdraw_write_permission(share, operation.access)
            share.adopt(operation.access, operation.selection)
            self._finish(share, Status.ACTIVE, trail)
            return f"finished the {operation.name}"

    def rotate(self, share: Share, actor: str) -> Share:
        """Give the share user a new password and the replicator docs with it."""
        with self._audit(share, "rotate credentials", actor) as trail:
            if share.status is not Status.ACTIVE:
                raise ConflictError(f"a share that is {share.status} has no credentials")
            share.operation = Operation.toward("rotate", share.access, share.selection)
            self._save_transition(share)
            try:
                self._stop_replications(share, self.home(share))
                self._converge(share, share.access, share.selection, rotate=True)
            except COUCH_FAILURES:
                log.warning("share %s: rotation stopped half-way; reconcile finishes it", share.id)
                raise
            self._finish(share, Status.ACTIVE, trail)
        return share

    def repair(self, share: Share) -> list[str]:
        """Rewrite the parts of an active share that are missing, changed or failed.

        A share user whose password no longer matches its replicator docs gets a new one.
        """
        dbs = self.registry.parties(share.owner, share.recipient)
        parts = self._parts(share, share.access, share.selection, dbs)
        repaired = [name for name, part in parts.items() if self._repair_part(part)]
        basic = parts[O2R].body["source"]["auth"]["basic"]  # the password replication uses
        sites = {db.server: self.registry.site(db) for db in dbs}.values()
        if not all(self._logs_in(site, basic["username"], basic["password"]) for site in sites):
            self._stop_replications(share, self.registry.site(dbs[0]))
            parts = self._parts(share, share.access, share.selection, dbs, rotate=True)
            for name in (SHARE_USER, SHARE_USER_AWAY, O2R, R2O):
                if name in parts and parts[name].body is not None:
                    apply(self.sites[parts[name].server], parts[name])
            repaired.append("credentials")
        return repaired

    def refresh_scope(self, share: Share) -> list[str]:
        """Rewrite the guards and replicator docs whose rule-made id lists moved."""
        parts = self._parts(share, share.access, share.selection)
        names = (ACCESS_OWNER, ACCESS_RECIPIENT, O2R, R2O)
        return [name for name in names if self._repair_part(parts[name])]

    def home(self, share: Share) -> Site:
        """The server of the share's owner, where its replications run."""
        return self.registry.site(self.registry.get(share.owner, "owner"))

    def _couch(self, database: Database) -> CouchClient:
        return self.registry.site(database).couch

    @staticmethod
    def _stop_replications(share: Share, home: Site) -> None:
        """Delete the share's replicator docs before its password changes; they are written
        again with the new one. A job left running with the old password would fail its
        logins, and CouchDB 3.4+ then locks the share user out, the new password too."""
        for direction in Direction:
            ensure_absent(home.couch, REPLICATOR_DB, replicator_doc_id(share.id, direction))

    def _repair_part(self, part: Part) -> bool:
        if part.body is None:
            return False
        site = self.sites[part.server]
        if part.kind == "doc":
            return ensure_current(site.couch, part.db, part.body)
        return apply(site, part)

    @staticmethod
    def _logs_in(site: Site, name: str, password: str) -> bool:
        token = base64.b64encode(f"{name}:{password}".encode()).decode()
        session = site.couch.session_as({"Authorization": f"Basic {token}"})
        return (session.get("userCtx") or {}).get("name") == name

    def events(self, share_id: str) -> list[Event]:
        return self.store.events(share_id)

    def _expire_if_due(self, share: Share, actor: str) -> None:
        """Record an invitation past its time as expired."""
        if share.status is Status.PENDING and share.current_status is Status.EXPIRED:
            with self._audit(share, "expire", actor) as trail:
                self._end(share, Status.EXPIRED, trail)

    def _require(self, share: Share, status: Status, verb: str) -> None:
        if share.status is not status:
            raise ConflictError(f"a share that is {share.status} cannot be {verb}")

    def _save_transition(self, share: Share) -> None:
        """Save a change of status; losing a race to another request is a conflict."""
        try:
            self.store.save_share(share)
        except PreconditionFailed:
            raise ConflictError("another request changed this share at the same time") from None

    def _provision(
        self,
        share: Share,
        roll_back_to: Status | None,
        dbs: tuple[Database, Database],
        trail: "Trail",
    ) -> None:
        try:  # a first provisioning: nothing to reuse, the credential is new
            self._converge(share, share.access, share.selection, dbs, rotate=True)
        except (*COUCH_FAILURES, SharingError):
            self._roll_back_provision(share, roll_back_to)
            raise
        self._finish(share, Status.ACTIVE, trail)

    def _change_parts(self, share: Share, access: Access, selection: Selection):
        old = (share.access, share.selection)
        share.operation = Operation.toward("patch", access, selection)
        self.store.save_share(share)
        try:
            self._converge(share, access, selection)
            self._withdraw_write_permission(share, access)
        except (*COUCH_FAILURES, SharingError):
            self._roll_back_patch(share, *old)
            raise

    def _end(self, share: Share, status: Status, trail: "Trail") -> None:
        """A final status: the pair is free for a new share."""
        self._finish(share, status, trail)
        self.store.release_pair(share)

    @contextmanager
    def _audit(self, share: Share, action: str, actor: str) -> Iterator["Trail"]:
        """Record the action's outcome in the audit trail, whatever it is: with the share's
        final record when the block ends it well (`_finish` with the trail), else alone."""
        trail = Trail(share.id, action, actor)
        try:
            yield trail
        except SharingError as exc:
            self._log_event(trail.event(f"refused: {exc.detail}"))
            raise
        except COUCH_FAILURES:
            self._log_event(trail.event("failed: CouchDB error"))
            raise
        if not trail.recorded:
            self._log_event(trail.event("ok"))

    def _log_event(self, event: Event) -> None:
        try:
            self.store.add_event(event)
        except COUCH_FAILURES:
            log.warning("share %s: event %s not recorded", event.share_id, event.action)

    def _converge(
        self,
        share: Share,
        access: Access | None,
        selection: Selection | None,
        dbs: tuple[Database, Database] | None = None,
        rotate: bool = False,
    ):
        """Bring the share's parts in line with (access, selection); `None` removes them."""
        parts = self._parts(share, access, selection, dbs, rotate)
        done = share.operation.done
        with self._progress_kept(share):
            converge(self.sites, parts, done, done.append)

    @contextmanager
    def _progress_kept(self, share: Share) -> Iterator[None]:
        """If the block fails, write how far the operation got into the share's record
        (if CouchDB lets us), so that the record shows it."""
        try:
            yield
        except Exception:
            try:
                self.store.save_share(share)
            except (*COUCH_FAILURES, PreconditionFailed):
                name = share.operation.name
                log.warning("share %s: the progress of %s not recorded", share.id, name)
            raise

    def _parts(
        self,
        share: Share,
        access: Access | None,
        selection: Selection | None,
        dbs: tuple[Database, Database] | None = None,
        rotate: bool = False,
    ) -> dict[str, Part]:
        owner_db, recipient_db = dbs or self.registry.parties(share.owner, share.recipient)
        scope = reverse = Scope(None)
        if access is not None and selection is not None:
            scope = self._scope(selection, access, owner_db)
            reverse = scope
            if access is Access.READ_WRITE and selection.collections is None:
                own = self._own_collection_ids(owner_db, recipient_db)
                reverse = replace(scope, collections=own)
        target = Target(
            access,
            scope,
            owner_db.database,
            recipient_db.database,
            reverse,
            owner_db.server,
            recipient_db.server,
        )
        home = self.registry.site(owner_db)
        self.registry.site(recipient_db)  # refuse (409) a server no longer configured
        credentials = self._credentials(share, home, access is not None and not rotate)
        return wanted_parts(share, target, credentials, self.replication_urls, self.store.db)

    @staticmethod
    def _credentials(share: Share, home: Site, reuse: bool) -> Credentials:
        """The share user's password as its replicator doc holds it, or a new one."""
        name = share_user_name(share.id)
        if reuse:
            try:
                doc = home.couch.get(
                    REPLICATOR_DB, replicator_doc_id(share.id, Direction.OWNER_TO_RECIPIENT)
                )
                basic = doc["source"]["auth"]["basic"]
                if basic["username"] == name:
                    return Credentials(name, basic["password"])
            except (NotFound, KeyError, TypeError):
                pass
        return Credentials(name, new_password(), fresh=True)

    def _withdraw_write_permission(self, share: Share, access: Access | None) -> None:
        """Going from read-write to read-only: purge the recipient's `db_sharing` copy.

        The owner's deletion of it cannot be trusted to arrive: the recipient's guard now
        refuses `db_sharing`, and may do so before the replication carries the tombstone.
        """
        if share.access is Access.READ_WRITE and access is Access.READ:
            recipient_db = self.registry.parties(share.owner, share.recipient)[1]
            self._purge_db_sharing(share, recipient_db)

    def _purge_db_sharing(self, share: Share, recipient_db: Database) -> None:
        if "purge:db_sharing" not in share.operation.done:
            couch = self._couch(recipient_db)
            purge_doc(couch, recipient_db.database, share.db_sharing_doc_id)
            share.operation.done.append("purge:db_sharing")

    def _purge_recipient(self, share: Share, recipient_db: Database) -> None:
        """Always withdraw the recipient's `db_sharing` copy; purge shared docs if asked."""
        done = share.operation.done
        self._purge_db_sharing(share, recipient_db)
        if share.operation.purge and "purge:shared-docs" not in done:
            # Without the rules: an item that matched once and no longer does goes too.
            selector = share_selector(
                share.owner,
                share.recipient,
                share.access,
                Scope(share.collections),
                Direction.OWNER_TO_RECIPIENT,
            )
            couch = self._couch(recipient_db)
            purge_shared_docs(couch, recipient_db.database, share.owner, selector)
            share.operation.done.append("purge:shared-docs")

    def _finish(self, share: Share, status: Status, trail: "Trail | None" = None) -> Share:
        """Settle on `status`; only an invitation keeps its expiry. With the operation's
        `trail`, its "ok" event is written in the same request: the operation ends here."""
        share.status = status
        share.operation = None
        if status not in (Status.PENDING, Status.EXPIRED):
            share.expires_at = None
        share.updated_at = now_iso()
        if trail is None:
            return self.store.save_share(share)
        self.store.save_share(share, trail.event("ok"))
        trail.recorded = True
        return share

    def _roll_back_provision(self, share: Share, back_to: Status | None) -> None:
        """Remove what was written; then forget the share, or return it to `back_to`."""
        try:
            share.operation = Operation.toward("roll back", None, None)
            self._converge(share, None, None)
            if back_to is None:
                self.store.delete_share(share)
                self.store.release_pair(share)
            else:
                self._finish(share, back_to)
        except (*COUCH_FAILURES, PreconditionFailed):
            log.warning(
                "share %s: provisioning failed and could not be rolled back; DELETE it to finish",
                share.id,
            )

    def _roll_back_patch(self, share: Share, access: Access, selection: Selection):
        try:
            share.operation = Operation.toward("roll back", access, selection)
            self._converge(share, access, selection)
            self._finish(share, Status.ACTIVE)
        except (*COUCH_FAILURES, PreconditionFailed):
            log.warning("share %s: change failed and could not be undone", share.id)

    def _checked_parties(
        self, owner: str, recipient: str, undisputed: bool = False
    ) -> tuple[Database, Database]:
        owner_db, recipient_db = self.registry.parties(owner, recipient, undisputed)
        same = (owner_db.server, owner_db.database) == (recipient_db.server, recipient_db.database)
        if owner == recipient or same:
            raise InvalidRequest("owner and recipient must be different databases", "recipient")
        return owner_db, recipient_db

    def _checked_selection(
        self, owner_db: Database, recipient_db: Database, selection: Selection
    ) -> Selection:
        """The selection with its collections checked and its rules valid (422 if not).

        Both databases are read at once, with their `0000-config`: a party whose database
        is gone, or no longer holds its UUID, is refused (409).
        """
        if selection.rules is not None:
            parse_rules(selection.rules)
        unique = None
        if selection.collections is not None:
            unique = list(dict.fromkeys(selection.collections))
        keys = [f"{SHARED_PREFIXES['collection']}{c}" for c in unique or []]
        owner_docs, recipient_docs = self._read_confirmed((owner_db, recipient_db), keys)
        if unique is None:
            return Selection(None, selection.rules)
        unknown = [
            cid
            for cid, key in zip(unique, keys, strict=True)
            if not _is_own_collection(owner_docs[key], owner_db.config_uuid)
        ]
        if unknown:
            raise InvalidRequest(
                f"not collections of the owner's database: {', '.join(unknown)}", "collections"
            )
        present = [key for key in keys if recipient_docs[key] is not None]
        taken = self._foreign_ids(owner_db, recipient_db, present)
        if taken:
            ids = ", ".join(k.removeprefix(SHARED_PREFIXES["collection"]) for k in taken)
            raise ConflictError(
                f"the recipient's database has collections of its own with these ids: {ids}",
                "collections",
            )
        return Selection(unique, selection.rules)

    def _scope(self, selection: Selection, access: Access, owner_db: Database) -> Scope:
        """What the owner->recipient replication carries, with the id lists rules need."""
        rules = tuple(parse_rules(selection.rules)) if selection.rules else ()
        scope = Scope(selection.collections, rules)
        kinds = {rule.type for rule in rules}
        couch = self._couch(owner_db)
        if "collection" in kinds:
            ids = matching_ids(couch, owner_db.database, "collection", scope)
            scope = replace(scope, item_collections=ids)
        if "item" in kinds:
            scope = replace(scope, item_ids=matching_ids(couch, owner_db.database, "item", scope))
        return scope

    def _read_confirmed(
        self, dbs: tuple[Database, Database], keys: list[str]
    ) -> list[dict[str, dict | None]]:
        """The docs with these ids in each party's database, each read at once with its
        config, which is checked (see `Registry.read_confirmed`), and with its guard, which
        the guard editor starts its next edit from."""
        found = run_together(
            *(
                lambda f=f, d=d: self.registry.read_confirmed(f, d, [*keys, GUARD_ID])
                for f, d in _roles(dbs)
            )
        )
        for db, docs in zip(dbs, found, strict=True):
            self.registry.site(db).editors.guards.saw(db.database, docs.pop(GUARD_ID))
        return found

    def _foreign_ids(
        self, owner_db: Database, recipient_db: Database, present: list[str]
    ) -> list[str]:
        """Of these ids, present in the recipient's database, those it holds on a history
        unrelated to the owner's doc.

        A copy from an earlier share shares revisions with the owner's doc and is let be.
        """

        def revisions(db: Database, doc_id: str) -> set[str]:
            return history(self._couch(db).get(db.database, doc_id, params={"revs": "true"}))

        return [
            doc_id
            for doc_id in present
            if not revisions(recipient_db, doc_id) & revisions(owner_db, doc_id)
        ]

    def _own_collection_ids(self, owner_db: Database, recipient_db: Database) -> list[str]:
        """The owner's collections, but for ids the recipient holds on a history of their own:
        those would carry the recipient's own items back to the owner."""
        prefix = SHARED_PREFIXES["collection"]
        keys = [
            doc["_id"]
            for doc in docs_with_prefix(self._couch(owner_db), owner_db.database, prefix)
            if _is_own_collection(doc, owner_db.config_uuid)
        ]
        recipient = self._couch(recipient_db)
        rows = recipient.post(recipient_db.database, "_all_docs", json={"keys": keys})["rows"]
        present = [r["id"] for r in rows if "value" in r and not r["value"].get("deleted")]
        taken = set(self._foreign_ids(owner_db, recipient_db, present))
        return [key.removeprefix(prefix) for key in keys if key not in taken]


@dataclass
class Trail:
    """The audit trail of one operation under way: who does what to which share."""

    share_id: str
    action: str
    actor: str
    recorded: bool = False  # its outcome is written

    def event(self, outcome: str) -> Event:
        return Event(self.share_id, self.action, self.actor, outcome)


def _roles(dbs: tuple[Database, Database]) -> list[tuple[str, Database]]:
    """Each party's database with the request field that names it."""
    return list(zip(("owner", "recipient"), dbs, strict=True))


def _by_uuid(*dbs: Database) -> dict[str, Database]:
    return {db.config_uuid: db for db in dbs}


def _is_own_collection(doc: dict | None, config_uuid: str) -> bool:
    if not doc or doc.get("type") != "collection":
        return False
    return (doc.get("data") or {}).get("config_uuid") == config_uuid
