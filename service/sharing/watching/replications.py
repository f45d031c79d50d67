"""The broker's replications as every server's `_replicator` holds them, followed from its
`_changes`: by the database each reads from and the one it writes into.

The docs written since the last look are kept until taken (`take_written`): the on-change
runs run each once. At the first look at a server, every doc is read; which were written
since the runs last dealt with them is known only from a position saved then (`start_from`):
the docs changed after it are written, the others not. Without one, nothing is known of
any (`take_unknown`).
"""

import logging
from dataclasses import dataclass
from urllib.parse import unquote

from service.couch import CouchError, CouchUnavailable
from service.sharing.core.model import Direction, place
from service.sharing.core.sites import Site, Sites
from service.sharing.placing.replicator import REPLICATOR_DB, REPLICATOR_PREFIX, replicator_doc_id
from service.sharing.watching.checkpoints import changes_pages

log = logging.getLogger(__name__)
Key = tuple[str, str]  # (home server, replicator doc id)


@dataclass(frozen=True)
class Replication:
    """One replication of ours. Its doc is read when needed, so thousands of them take
    little memory.

    `home` is the server whose `_replicator` holds it; `source` and `target` are each a
    server's name and a database on it; `direction` is its share's, as its label says."""

    doc_id: str
    share_id: str
    home: str
    source: tuple[str, str]
    target: tuple[str, str]
    direction: str = ""

    @property
    def key(self) -> Key:
        return self.home, self.doc_id


class Replications:
    """Every replication labelled as `broker`'s (its state database), kept in memory and
    brought in line with each `_replicator` by `refresh`."""

    def __init__(self, sites: Sites, broker: str):
        self.sites = sites
        self.broker = broker
        self._all: dict[Key, Replication] = {}
        self._into: dict[str, dict[Key, Replication]] = {}  # target's place -> ...
        self._out_of: dict[str, dict[Key, Replication]] = {}  # source's place -> ...
        self._seq: dict[str, object] = {}  # home server -> its `_replicator` seq
        self._saved: dict[str, object] = {}  # home server -> where the runs last settled
        self._written: dict[Key, None] = {}  # in the order they were written
        self._unknown: dict[Key, None] = {}

    def start_from(self, saved: dict[str, object]) -> None:
        """Where each server's `_replicator` stood when the runs last had nothing left to do
        (see `positions`): read before the first look."""
        self._saved = dict(saved)

    def positions(self) -> dict[str, object]:
        """Where each server's `_replicator` has been read to."""
        return dict(self._seq)

    def refresh(self, changed: set[str] | None = None) -> None:
        """Read each server's `_replicator` changes since the last look; nothing to read
        where `changed` (the places `_db_updates` saw move) leaves its `_replicator` out.
        A server that does not answer keeps what was known of it."""
        for site in self.sites:
            seq = self._seq.get(site.name)
            if changed is not None and place(site.name, REPLICATOR_DB) not in changed and seq:
                continue
            try:
                if seq is None:
                    self._first_look(site)
                else:
                    self._refresh(site, seq, self._written)
            except (CouchError, CouchUnavailable) as exc:
                log.warning("could not read %s's _replicator: %s", site.name, exc)

    @property
    def untaken(self) -> bool:
        """Whether docs were written, or found, since the last takes."""
        return bool(self._written or self._unknown)

    def take_written(self) -> list[Key]:
        """The replications whose docs were written since the last take, in that order."""
        written, self._written = list(self._written), {}
        return written

    def take_unknown(self) -> list[Key]:
        """The replications found at a first look with no saved position: whether their
        docs were written meanwhile is unknown."""
        unknown, self._unknown = list(self._unknown), {}
        return unknown

    def get(self, key: Key) -> Replication | None:
        return self._all.get(key)

    def all(self) -> list[Replication]:
        return list(self._all.values())

    def targets(self) -> set[str]:
        """The places of the databases a replication of ours writes into."""
        return set(self._into)

    def into(self, target: str) -> list[Replication]:
        return list(self._into.get(target, {}).values())

    def out_of(self, source: str) -> list[Replication]:
        return list(self._out_of.get(source, {}).values())

    def read_only(self, inflow: Replication) -> bool:
        """Whether this owner-to-recipient replication's share has no way back."""
        back = replicator_doc_id(inflow.share_id, Direction.RECIPIENT_TO_OWNER)
        return (
            inflow.direction == Direction.OWNER_TO_RECIPIENT
            and (inflow.home, back) not in self._all
        )

    def _first_look(self, site: Site) -> None:
        """Read every doc; those changed since the saved position are written."""
        found: dict[Key, None] = {}
        try:
            self._refresh(site, 0, found)
        except (CouchError, CouchUnavailable):
            self._seq.pop(site.name, None)  # the next look starts again from the first
            raise
        changed = self._changed_since(site, self._saved.get(site.name))
        if changed is None:
            self._unknown.update(found)
        else:
            self._written.update(dict.fromkeys(key for key in found if key[1] in changed))

    def _changed_since(self, site: Site, saved: object) -> set[str] | None:
        """The ids of the docs changed after `saved`; None when unknown."""
        if saved is None:
            return None
        try:
            pages = list(changes_pages(site.couch, REPLICATOR_DB, saved))
        except (CouchError, CouchUnavailable) as exc:  # a position from another database
            log.warning("%s's _replicator not read from its saved position: %s", site.name, exc)
            return None
        return {row["id"] for page in pages for row in page["results"]}

    def _refresh(self, site: Site, seq: object, written: dict[Key, None]) -> None:
        """Read the changes after `seq` into the index, and mark the docs found in
        `written`."""
        for page in changes_pages(site.couch, REPLICATOR_DB, seq, include_docs="true"):
            for row in page["results"]:
                self._forget((site.name, row["id"]))
                found = None if row.get("deleted") else self._parse(site, row.get("doc") or {})
                if found is not None:
                    self._all[found.key] = found
                    self._into.setdefault(place(*found.target), {})[found.key] = found
                    self._out_of.setdefault(place(*found.source), {})[found.key] = found
                    written[found.key] = None
            self._seq[site.name] = page["last_seq"]

    def _forget(self, key: Key) -> None:
        gone = self._all.pop(key, None)
        if gone is None:
            return
        for index, end in ((self._into, gone.target), (self._out_of, gone.source)):
            entries = index[place(*end)]
            entries.pop(key, None)
            if not entries:
                del index[place(*end)]

    def _parse(self, home: Site, doc: dict) -> Replication | None:
        label = doc.get("sharing_broker")
        if not doc.get("_id", "").startswith(REPLICATOR_PREFIX) or not isinstance(label, dict):
            return None
        if label.get("broker") != self.broker:
            return None
        try:
            source, target = (self._end(doc[end]["url"]) for end in ("source", "target"))
        except (KeyError, TypeError, AttributeError):
            return None
        if source is None or target is None:
            return None  # a server the settings no longer name
        share_id, direction = str(label.get("share_id")), str(label.get("direction", ""))
        return Replication(doc["_id"], share_id, home.name, source, target, direction)

    def _end(self, url: str) -> tuple[str, str] | None:
        """The server (by how replicators reach it) and database a replication URL names."""
        base, _, name = url.rstrip("/").rpartition("/")
        for site in self.sites:
            if site.replication_url.rstrip("/") == base:
                return site.name, unquote(name)
        return None
