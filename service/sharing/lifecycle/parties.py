"""Checking a share's two databases and what it selects, before anything is written."""

from dataclasses import replace

from service.sharing.core.errors import ConflictError, InvalidRequest
from service.sharing.core.model import Access, Database, Selection
from service.sharing.core.revisions import history
from service.sharing.core.together import run_together
from service.sharing.crossing.preview import matching_ids
from service.sharing.crossing.rules import parse_rules
from service.sharing.crossing.scan import docs_with_prefix
from service.sharing.crossing.selectors import SHARED_PREFIXES, Scope
from service.sharing.lifecycle.base import LifecycleBase
from service.sharing.placing.guard import GUARD_ID


class Parties(LifecycleBase):
    """The parties' databases and the selection, checked."""

    def _checked_parties(self, owner: str, recipient: str) -> tuple[Database, Database]:
        return _distinct(owner, recipient, *self.registry.parties(owner, recipient))

    def _checked_new_pair(
        self, owner: str, recipient: str
    ) -> tuple[Database, Database, dict | None]:
        """The parties of a new share, undisputed, and the claim on their pair."""
        owner_db, recipient_db, claim = self.registry.new_pair(owner, recipient)
        return (*_distinct(owner, recipient, owner_db, recipient_db), claim)

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
        config, which is checked (see `Registry.read_confirmed`), and with its guard, so
        that making the database ready for the share needs no second read of it."""
        found = run_together(
            *(
                lambda f=f, d=d: self.registry.read_confirmed(f, d, [*keys, GUARD_ID])
                for f, d in _roles(dbs)
            )
        )
        for db, docs in zip(dbs, found, strict=True):
            self.registry.site(db).access.saw(db.database, docs.pop(GUARD_ID))
        return found

    def _foreign_ids(
        self, owner_db: Database, recipient_db: Database, present: list[str]
    ) -> list[str]:
        """Of these collection ids, present in the recipient's database, those it holds as
        its own: labelled with its own Configuration UUID, or on a history unrelated to the
        owner's doc.

        A copy from an earlier share shares revisions with the owner's doc and is let be,
        unless the copy the owner holds came from the recipient and was relabelled as the
        owner's: the recipient's label says whose it is.
        """

        def read(db: Database, doc_id: str) -> dict:
            return self._couch(db).get(db.database, doc_id, params={"revs": "true"})

        foreign = []
        for doc_id in present:
            theirs = read(recipient_db, doc_id)
            own = _is_own_collection(theirs, recipient_db.config_uuid)
            if own or not history(theirs) & history(read(owner_db, doc_id)):
                foreign.append(doc_id)
        return foreign

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


def _roles(dbs: tuple[Database, Database]) -> list[tuple[str, Database]]:
    """Each party's database with the request field that names it."""
    return list(zip(("owner", "recipient"), dbs, strict=True))


def _is_own_collection(doc: dict | None, config_uuid: str) -> bool:
    if not doc or doc.get("type") != "collection":
        return False
    return (doc.get("data") or {}).get("config_uuid") == config_uuid


def _distinct(
    owner: str, recipient: str, owner_db: Database, recipient_db: Database
) -> tuple[Database, Database]:
    """The two databases, unless they are one (422)."""
    same = (owner_db.server, owner_db.database) == (recipient_db.server, recipient_db.database)
    if owner == recipient or same:
        raise InvalidRequest("owner and recipient must be different databases", "recipient")
    return owner_db, recipient_db
