"""The feed of share events: the state database's events in the order CouchDB gives them
(its `_changes`), for any number of readers.

A page is one `_changes` read with the reader's selector. A long poll that finds nothing
waits on one follower per process: a thread that long-polls `_changes` for events and wakes
the waiters whose filter an arriving event matches. However many readers wait, CouchDB
holds one long poll per process for them, and reads a page only for a reader an event is
for.
"""

import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from service.couch import CouchError, CouchUnavailable, NotFound
from service.sharing.core.model import DATABASE_KINDS, KINDS, Event
from service.sharing.core.store import StateStore

log = logging.getLogger(__name__)
IDLE_SECONDS = 60  # the follower stops after this long with no reader waiting
KEPT_BATCHES = 200  # arrivals kept for waiters to match against
KEPT_HEADS = 1000  # the follower's latest positions, that readers may come back from
SCAN_PAGE = 200  # rows a page read without a `_selector` filter scans at once


@dataclass(frozen=True)
class Reader:
    """Whose events a reader wants: those of a database (as either party), of a share, or
    every event (an admin's). Only an admin reads the events about registrations."""

    database: str | None = None
    share_id: str | None = None
    admin: bool = False

    def selector(self) -> dict:
        actions = sorted({*KINDS, *DATABASE_KINDS} if self.admin else KINDS)
        wanted = {"type": "event", "outcome": "ok", "action": {"$in": actions}}
        if self.database:
            parties = [{"owner": self.database}, {"recipient": self.database}]
            wanted["$or"] = [*parties, {"database": self.database}] if self.admin else parties
        if self.share_id:
            wanted["share_id"] = self.share_id
        return wanted

    def wants(self, doc: dict) -> bool:
        """The selector, in memory, for an event the follower saw arrive."""
        event = Event.from_doc(doc)
        if event.kind is None or (event.database and not self.admin):
            return False
        about = (event.owner, event.recipient, event.database)
        if self.database and self.database not in about:
            return False
        return not self.share_id or self.share_id == event.share_id


@dataclass(frozen=True)
class Entry:
    """One event of the feed, where it stands in CouchDB's order (`seq`)."""

    seq: str
    event_id: str
    event: Event

    def public(self) -> dict:
        """The event as readers and endpoints get it: both parties may see all of it."""
        event = self.event
        common = {"id": self.event_id, "kind": event.kind, "at": event.at, "role": event.role}
        if event.database:  # about a registration: admins only
            return {**common, "database": event.database}
        return {
            **common,
            "share_id": event.share_id,
            "owner": event.owner,
            "recipient": event.recipient,
        }


class EventFeed:
    """Pages of events, and long polls over one follower."""

    def __init__(
        self, store: StateStore, follow_seconds: float, max_waiting: int, longest_wait: float
    ):
        self.store = store
        self.longest_wait = longest_wait  # seconds, whatever a reader asks
        self.follow_seconds = follow_seconds  # how long one follower request waits in CouchDB
        # Each wait holds one of the process's threads: past this many, a long poll answers
        # at once, so that waits never take every thread from other requests.
        self.max_waiting = max_waiting
        self.stopping = threading.Event()  # set when the process stops: waits end at once
        self._changed = threading.Condition()
        self._arrived: deque[tuple[int, list[dict]]] = deque(maxlen=KEPT_BATCHES)
        self._arrivals = 0  # batches the follower has seen
        self._waiting = 0
        self._last_wait = 0.0
        self._follower: threading.Thread | None = None
        # Where the running follower stood, latest last: seq -> the arrivals up to there.
        self._heads: OrderedDict[str, int] = OrderedDict()
        self._selector_filter: bool | None = None  # asked of the server once

    def page(self, reader: Reader, since: str, limit: int) -> tuple[list[Entry], str]:
        """Up to `limit` events after `since` (a CouchDB seq, or `now`), and the seq to
        read on from."""
        params = {"filter": "_selector", "include_docs": "true", "since": since, "limit": limit}
        body = {"selector": reader.selector()}
        if self._filters_by_selector():
            found = self.store.couch.post(self.store.db, "_changes", json=body, params=params)
            return _entries(found["results"], reader), found["last_seq"]
        return self._page_in_memory(reader, since, limit)

    def _filters_by_selector(self) -> bool:
        """Whether the server filters `_changes` by a selector: Apache CouchDB does since
        2.0; pouchdb-server does not (and stops when asked to)."""
        if self._selector_filter is None:
            self._selector_filter = "couchdb" in self.store.couch.get("")
        return self._selector_filter

    def _page_in_memory(self, reader: Reader, since: str, limit: int) -> tuple[list[Entry], str]:
        """The same page, filtered here, for a server without `_selector` filters."""
        entries: list[Entry] = []
        while len(entries) < limit:
            params = {"include_docs": "true", "since": since, "limit": SCAN_PAGE}
            found = self.store.couch.get(self.store.db, "_changes", params=params)
            for row in found["results"]:
                entries += _entries([row], reader)
                since = row["seq"]
                if len(entries) == limit:
                    return entries, since
            since = found["last_seq"]
            if len(found["results"]) < SCAN_PAGE:
                break
        return entries, since

    def wait(
        self, reader: Reader, since: str, limit: int, timeout: float
    ) -> tuple[list[Entry], str]:
        """A page; if it is empty, wait up to `timeout` seconds for one (not at all while
        `max_waiting` others wait).

        A reader that comes back from where the follower stood (the `next_since` a wait
        answered at its timeout) is not read a page for: the follower has seen everything
        up to there. So a waiting reader costs CouchDB nothing until an event is for it.
        """
        timeout = min(timeout, self.longest_wait)
        with self._changed:
            if self._waiting >= self.max_waiting:
                timeout = 0
            self._waiting += 1
        deadline = time.monotonic() + timeout
        try:
            self._follow()  # before the first page: what that page misses, it sees
            with self._changed:
                known = self._heads.get(since)  # the arrivals up to there, if it stood there
            while True:
                with self._changed:
                    seen = self._arrivals
                if known is not None:
                    seen, entries, last, known = known, [], since, None
                else:
                    entries, last = self.page(reader, since, limit)
                if entries or time.monotonic() >= deadline or self.stopping.is_set():
                    return entries, last
                since = last
                head = self._sleep_until_wanted(reader, seen, deadline)
                if head is not None:
                    return [], head
        finally:
            with self._changed:
                self._waiting -= 1
                self._last_wait = time.monotonic()

    def _sleep_until_wanted(self, reader: Reader, seen: int, deadline: float) -> str | None:
        """Sleep until an event this reader wants arrives after `seen`, or the deadline.
        At the deadline, with nothing wanted arrived, return where the follower stands: the
        reader has been shown, or has no need of, every event up to there."""
        with self._changed:
            while not self.stopping.is_set():
                missed = self._arrivals - seen > len(self._arrived)
                arrived = [docs for number, docs in self._arrived if number > seen]
                if missed or any(reader.wants(doc) for docs in arrived for doc in docs):
                    return None
                seen = self._arrivals
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return next(reversed(self._heads), None)
                self._changed.wait(remaining)  # woken by arrivals and by stop()
            return None

    def _follow(self) -> None:
        """Start the follower if it is not running, from the state database's current
        sequence, read here: a page read after this call misses nothing it does not see."""
        with self._changed:
            if self._follower is not None and self._follower.is_alive():
                return
            since = self.store.couch.get(self.store.db)["update_seq"]
            self._last_wait = time.monotonic()
            self._heads = OrderedDict({since: self._arrivals})
            self._follower = threading.Thread(
                target=self._run, args=(since,), name="event feed", daemon=True
            )
            self._follower.start()

    def arrivals(self) -> int:
        """How many batches of events the follower has seen, starting it if need be: a
        mark to wait from with `next_arrival`."""
        self._follow()
        with self._changed:
            self._last_wait = time.monotonic()  # a use, that keeps the follower running
            return self._arrivals

    def next_arrival(self, mark: int, timeout: float) -> None:
        """Sleep until the follower has seen an event since `mark` (at once if it has), or
        `timeout` seconds: for a loop that acts on every event, as webhooks do."""
        with self._changed:
            self._changed.wait_for(lambda: self._arrivals > mark or self.stopping.is_set(), timeout)

    def full(self) -> bool:
        """Whether as many wait as may: a new stream would find no thread to wait in."""
        with self._changed:
            return self._waiting >= self.max_waiting

    def stop(self) -> None:
        """End every wait, and the follower with its current request."""
        self.stopping.set()
        with self._changed:
            self._changed.notify_all()

    def _run(self, since: str) -> None:
        selector = {"selector": {"type": "event"}}
        while True:
            with self._changed:
                idle = not self._waiting and time.monotonic() - self._last_wait > IDLE_SECONDS
                if idle or self.stopping.is_set():
                    self._follower, self._heads = None, OrderedDict()
                    return
            try:
                params = {
                    "feed": "longpoll",
                    "include_docs": "true",
                    "since": since,
                    "timeout": round(self.follow_seconds * 1000),
                }
                if self._filters_by_selector():
                    params["filter"] = "_selector"
                    found = self.store.couch.post(
                        self.store.db, "_changes", json=selector, params=params
                    )
                else:
                    found = self.store.couch.get(self.store.db, "_changes", params=params)
            except NotFound:  # the state database is gone: waiters learn it from their pages
                with self._changed:
                    self._follower, self._heads = None, OrderedDict()
                return
            except (CouchError, CouchUnavailable) as exc:
                log.warning("the event feed's follower could not read CouchDB: %s", exc)
                time.sleep(1)
                continue
            since = found["last_seq"]
            docs = [row["doc"] for row in found["results"] if _is_event(row.get("doc"))]
            with self._changed:  # a batch and where it leaves the follower, for `wait`
                if docs:
                    self._arrivals += 1
                    self._arrived.append((self._arrivals, docs))
                    self._changed.notify_all()
                self._heads[since] = self._arrivals
                self._heads.move_to_end(since)
                if len(self._heads) > KEPT_HEADS:
                    self._heads.popitem(last=False)


def _entries(rows: list[dict], reader: Reader) -> list[Entry]:
    """The rows that are events the reader wants, as entries of the feed."""
    return [
        Entry(row["seq"], row["id"], Event.from_doc(row["doc"]))
        for row in rows
        if not row.get("deleted") and _is_event(row.get("doc")) and reader.wants(row["doc"])
    ]


def _is_event(doc: dict | None) -> bool:
    return bool(doc) and doc.get("type") == "event"
