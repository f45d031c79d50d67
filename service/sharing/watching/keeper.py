"""The owner's version, kept in the recipient's database for what a share carries.

The recipient's own user may write anything into their own database, and their phones do:
under a read-only share the app's sync pushes an edit of the owner's item without a word.
Refusing it would not help the device: it keeps its edit, checkpoints past the refusal,
and its longer history outvotes the owner's next edit. So the broker writes the owner's
version back over the edit instead, as a new revision of the recipient's branch; that
revision replicates to every device of theirs, and replaces the edit there on its next sync.

For each doc that an owner-to-recipient replication of ours carries, and whose winning
revision in the recipient's database the owner's database has never seen:
- under a read-only share, any such revision (an edit or a deletion) is set back;
- under a read-write share, only a tombstone the broker wrote when an earlier share ended
  (`ENDED_MARK`): the share carries the doc again, and a device must see it again.

Set back means: if the owner's current revision is a leaf there, the other live leaves go
and it wins; otherwise the owner's content is written over the winning revision. Only a doc
on a branch that shares history with the owner's is touched, so a doc of the recipient's
own is never written, nor one the owner's database no longer holds or the share no longer
carries.
"""

import logging
from dataclasses import dataclass

from service.couch import CouchClient, DocumentConflict, NotFound
from service.metrics import OWNER_VERSIONS_KEPT
from service.sharing.core.revisions import history
from service.sharing.crossing.mango import matches
from service.sharing.crossing.selectors import ENDED_MARK, SHARED_PREFIXES

log = logging.getLogger(__name__)
BOOKKEEPING = ("_rev", "_revisions", "_conflicts", "_deleted")


@dataclass(frozen=True)
class Inflow:
    """One owner-to-recipient replication, as the keeper needs it."""

    share_id: str
    source: CouchClient
    source_db: str
    target: CouchClient
    target_db: str
    selector: dict
    read_only: bool


def _shared_kind(doc_id: str) -> bool:
    return doc_id.startswith(tuple(SHARED_PREFIXES.values()))


def winner(leaves: list[dict]) -> dict:
    """The leaf CouchDB shows: live before deleted, then the longest, then the highest id."""

    def rank(leaf: dict) -> tuple:
        generation, _, rev_id = leaf["_rev"].partition("-")
        return (not leaf.get("_deleted"), int(generation), rev_id)

    return max(leaves, key=rank)


def content(doc: dict) -> dict:
    """A doc without its bookkeeping; attachments by name and digest."""
    body = {k: v for k, v in doc.items() if k not in BOOKKEEPING and k != "_attachments"}
    attachments = doc.get("_attachments") or {}
    body["_attachments"] = {name: att.get("digest") for name, att in attachments.items()}
    return body


def candidates(rows: list[dict], read_only: bool) -> dict[str, list[str]]:
    """Doc id -> leaf revisions, for the `_changes` rows the keeper looks at: of shared
    kinds, and, under a read-write share, deleted."""
    return {
        row["id"]: [change["rev"] for change in row.get("changes", [])]
        for row in rows
        if _shared_kind(row["id"]) and (read_only or row.get("deleted"))
    }


class Keeper:
    """Sets the docs a share carries back to the owner's version in the recipient's database."""

    def keep(self, inflow: Inflow, leaves: dict[str, list[str]]) -> list[str]:
        """Judge these changed docs of the recipient's database (see `candidates`); return
        the ids set back."""
        missing = inflow.source.post(inflow.source_db, "_revs_diff", json=leaves)
        kept = []
        for doc_id in sorted(missing):
            unseen = set(missing[doc_id].get("missing", []))
            if unseen and self._keep_one(inflow, doc_id, unseen):
                kept.append(doc_id)
        return kept

    def _keep_one(self, inflow: Inflow, doc_id: str, unseen: set[str]) -> bool:
        rows = inflow.target.get(
            inflow.target_db, doc_id, params={"open_revs": "all", "revs": "true"}
        )
        leaves = [row["ok"] for row in rows if "ok" in row]
        shown = winner(leaves) if leaves else None
        if shown is None or shown["_rev"] not in unseen:
            return False
        if not inflow.read_only and not (shown.get("_deleted") and shown.get(ENDED_MARK)):
            return False
        owners = self._owners_version(inflow, doc_id)
        if owners is None or not history(shown) & history(owners):
            return False
        if not shown.get("_deleted") and content(shown) == content(owners):
            return False
        live = {leaf["_rev"] for leaf in leaves if not leaf.get("_deleted")}
        try:
            if owners["_rev"] in live:
                for rev in live & unseen:
                    inflow.target.delete(inflow.target_db, doc_id, params={"rev": rev})
            else:
                self._write_over(inflow, doc_id, shown, owners)
        except (DocumentConflict, NotFound):
            return False  # it moved again: the next pass sees it
        OWNER_VERSIONS_KEPT.inc()
        log.info("share %s: set %s back to the owner's version", inflow.share_id, doc_id)
        return True

    @staticmethod
    def _owners_version(inflow: Inflow, doc_id: str) -> dict | None:
        """The owner's live doc with its history, if the share carries it."""
        try:
            doc = inflow.source.get(inflow.source_db, doc_id, params={"revs": "true"})
        except NotFound:
            return None
        return doc if matches(inflow.selector, doc) else None

    @staticmethod
    def _write_over(inflow: Inflow, doc_id: str, shown: dict, owners: dict) -> None:
        """The owner's content as a child of the revision the recipient's database shows;
        attachments go inline unless that revision holds the same ones already."""
        body = content(owners)
        if body["_attachments"] and content(shown)["_attachments"] != body["_attachments"]:
            owners = inflow.source.get(
                inflow.source_db, doc_id, params={"rev": owners["_rev"], "attachments": "true"}
            )
        body = {k: v for k, v in owners.items() if k not in BOOKKEEPING}
        if not shown.get("_deleted"):
            body["_rev"] = shown["_rev"]
        # Over a tombstone CouchDB takes no revision: the write extends the deleted branch.
        inflow.target.put(inflow.target_db, doc_id, json=body)
