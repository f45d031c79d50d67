"""Bringing a share's parts in line with what it wants, and keeping the progress."""

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from service.couch import NotFound
from service.sharing.core.errors import PreconditionFailed
from service.sharing.core.model import Access, Database, Direction, Selection, Share
from service.sharing.core.sites import Site
from service.sharing.crossing.selectors import Scope
from service.sharing.lifecycle.base import COUCH_FAILURES, log
from service.sharing.lifecycle.parties import Parties
from service.sharing.placing.credentials import Credentials, new_password, share_user_name
from service.sharing.placing.parts import (
    Part,
    Target,
    apply,
    converge,
    ensure_absent,
    ensure_current,
    wanted_parts,
)
from service.sharing.placing.replicator import REPLICATOR_DB, replicator_doc_id
from service.sharing.placing.withdraw import withdraw_doc


class Placement(Parties):
    """A share's parts: what they should be, and converging them."""

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
        return wanted_parts(
            share, target, credentials, self.replication_urls, self.store.db, self.continuous
        )

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
        if part.kind == "access":  # read afresh: a guard seen lately may be gone since
            return site.access.prepare(part.db, fresh=True)
        return apply(site, part)

    @staticmethod
    def _roles_in_force(site: Site, name: str, password: str) -> list[str] | None:
        """The roles the user's logins carry on `site` now; None if it cannot log in."""
        token = base64.b64encode(f"{name}:{password}".encode()).decode()
        user = site.couch.session_as({"Authorization": f"Basic {token}"}).get("userCtx") or {}
        return (user.get("roles") or []) if user.get("name") == name else None

    def _withdraw_db_sharing(self, share: Share, recipient_db: Database) -> None:
        """Delete the recipient's copy of `db_sharing` with a tombstone that reaches their
        devices, so the app locks editing there too. (The step keeps the name it had when
        it purged, so a revoke recorded half-way by an earlier version resumes.)"""
        if "purge:db_sharing" not in share.operation.done:
            couch = self._couch(recipient_db)
            withdraw_doc(couch, recipient_db.database, share.db_sharing_doc_id, share.id)
            share.operation.done.append("purge:db_sharing")
