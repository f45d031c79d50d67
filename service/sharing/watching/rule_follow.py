"""Keeps rule-narrowed shares current as the owner's docs change.

A share whose rules narrow its collections or items carries explicit id lists in its
selector and guard: the collections a collection rule lets through, and the items whose
pictures follow them. This follower reads each such share's owner database `_changes`
since it last looked and, when a collection, item or picture changed, recomputes the
lists and rewrites the selector and the guards if they moved.
"""

import logging

from service.couch import CouchClient, CouchError, CouchUnavailable
from service.sharing.core.errors import SharingError
from service.sharing.core.store import StateStore
from service.sharing.crossing.selectors import SHARED_PREFIXES
from service.sharing.lifecycle.shares import ShareService
from service.sharing.watching.checkpoints import Checkpoints, changes_pages

log = logging.getLogger(__name__)
CHECKPOINT_ID = "rule-follow-checkpoints"
_SHARED = tuple(SHARED_PREFIXES.values())


class RuleFollow:
    """One pass over the shares that have rules."""

    def __init__(self, store: StateStore, shares: ShareService):
        self.store = store
        self.shares = shares
        self.checkpoints = Checkpoints(store.couch, store.db, CHECKPOINT_ID)
        self._failed: set[str] = set()  # shares whose lists were not rewritten: read again

    @property
    def pending(self) -> bool:
        """Whether a share's rewrite failed and waits for the next pass."""
        return bool(self._failed)

    def run(self, changed: set[str] | None = None) -> dict[str, list[str]]:
        """Share id -> the parts rewritten, for the shares whose lists moved.

        Only owner databases whose places are in `changed` are read (`None`: every one).
        """
        since = self.checkpoints.load()
        rewritten = {}
        shares = list(self.store.active_ruled_shares())
        databases = self.store.get_databases({share.owner for share in shares})
        for share in shares:
            db = databases.get(share.owner)
            if db is None:
                continue  # reconcile reports a share whose database is gone
            unmoved = changed is not None and db.place not in changed
            if unmoved and share.id in since and share.id not in self._failed:
                continue
            try:
                couch = self.shares.registry.site(db).couch
                moved, read_to = self._changed(couch, db.database, since.get(share.id))
                if moved and (parts := self.shares.refresh_scope(share)):
                    rewritten[share.id] = parts
                since[share.id] = read_to  # not before: a failed rewrite is tried again
                self._failed.discard(share.id)
            except (CouchError, CouchUnavailable, SharingError) as exc:
                self._failed.add(share.id)
                log.warning("share %s: rules not followed this pass: %s", share.id, exc)
        live = {share.id for share in shares}
        self._failed &= live
        self.checkpoints.save({k: v for k, v in since.items() if k in live})
        return rewritten

    @staticmethod
    def _changed(couch: CouchClient, db: str, since: object) -> tuple[bool, object]:
        """Whether a shared kind of doc changed after `since`, and the new `since`.

        A share seen for the first time counts as changed, and is followed from now on.
        """
        if since is None:
            return True, couch.get(db, "_changes", params={"since": "now"})["last_seq"]
        changed = False
        for page in changes_pages(couch, db, since):
            changed = changed or any(row["id"].startswith(_SHARED) for row in page["results"])
            since = page["last_seq"]
        return changed, since
