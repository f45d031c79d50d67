"""The states of the broker's replications, recorded from `_scheduler/docs` for lists.

Reading one replication's live state costs a request; a page of fifty shares would cost a
hundred. So a follower asks CouchDB every `every_seconds` for the replications in the
states that are few in a healthy server, and records them, with the time it asked, in one
doc of the state database. Continuous jobs are mostly `running`, so it asks for the others
(`initializing`, `pending`, `crashing`, `failed`). In on-change mode the broker runs the
replications itself, and they are mostly `idle` between runs: the runs say which run now
and which fail (`crashing`). The record says which state the replications it leaves out
are in.

A list shows a replication as its recorded state, that state if it was not among them,
`missing` if its replicator doc is gone, or `unknown` where nothing was recorded since the
share last changed, each with the time it stands for (`as_of`).
"""

import time
from collections.abc import Callable, Mapping

from service.couch import CouchClient
from service.metrics import REPLICATIONS
from service.sharing.core.model import Direction, Event, Status, now_iso
from service.sharing.core.sites import Sites
from service.sharing.core.store import StateStore
from service.sharing.placing.replicator import (
    IDLE,
    REPLICATOR_DB,
    REPLICATOR_PREFIX,
    RUNNING,
    ReplicationStatus,
    scheduler_states,
)

STATES_DOC_ID = "replication-states"
NOT_RUNNING = ("initializing", "pending", "crashing", "failed")
FAILING = ("crashing", "failed")


class StateRecorder:
    """A follower pass: records the few states, at most every `every_seconds`."""

    def __init__(
        self,
        sites: Sites,
        store: StateStore,
        every_seconds: float = 15.0,
        on_change: bool = False,
        runs: Callable[[str], dict[str, dict]] | None = None,
    ):
        """In on-change mode the broker runs the replications itself, and `runs(server)`
        says which of a server's run now or fail; without it, CouchDB's scheduler says."""
        self.sites = sites
        self.store = store
        self.every_seconds = every_seconds
        self.runs = runs
        self.asked = (*NOT_RUNNING, RUNNING) if on_change else NOT_RUNNING
        self.others = IDLE if on_change else RUNNING  # the state of those not asked for
        self._last = float("-inf")

    def run(self, changed: set[str] | None = None) -> dict[str, dict] | None:
        """Record now if it is time; return what was recorded (None: not now, or no
        `_scheduler` on a server). A server that does not answer fails the pass: the
        record keeps the time it stands for."""
        if time.monotonic() - self._last < self.every_seconds:
            return None
        self._last = time.monotonic()
        states: dict[str, dict] = {}
        by_server: dict[str, dict[str, dict]] = {}
        for site in self.sites:
            found = self.runs(site.name) if self.runs else scheduler_states(site.couch, self.asked)
            if found is None:
                return None
            states.update(found)
            by_server[site.name] = found
        record = {
            "type": STATES_DOC_ID,
            "checked_at": now_iso(),
            "states": states,
            "others": self.others,
        }
        before: dict[str, dict] = {}

        def replace(current: dict | None) -> dict:
            before.update((current or {}).get("states") or {})
            return record

        if self.store.update_doc(STATES_DOC_ID, replace):
            self._tell_transitions(before, states)
        for server, found in by_server.items():
            for state in self.asked:
                counted = sum(s["state"] == state for s in found.values())
                REPLICATIONS.labels(server, state).set(counted)
        return states

    def _tell_transitions(self, before: dict[str, dict], now: dict[str, dict]) -> None:
        """An event for each replication of an active share that started failing since the
        last record, and for each that stopped: the feed tells the parties."""
        failing_before = {i for i, s in before.items() if s["state"] in FAILING}
        failing_now = {i for i, s in now.items() if s["state"] in FAILING}
        changed = {i: "replication failing" for i in failing_now - failing_before}
        changed |= {i: "replication recovered" for i in failing_before - failing_now}
        by_share = {_share_of(doc_id): action for doc_id, action in sorted(changed.items())}
        by_share.pop(None, None)
        if not by_share:
            return
        for share in self.store.get_shares(set(by_share)).values():
            if share.status is Status.ACTIVE:
                action = by_share[share.id]
                event = Event(
                    share.id,
                    action,
                    "broker",
                    "ok",
                    owner=share.owner,
                    recipient=share.recipient,
                    role="broker",
                )
                self.store.add_event(event)


def _share_of(doc_id: str) -> str | None:
    """The share a replicator doc of the broker's belongs to."""
    for direction in Direction:
        suffix = f"-{direction}"
        if doc_id.startswith(REPLICATOR_PREFIX) and doc_id.endswith(suffix):
            return doc_id.removeprefix(REPLICATOR_PREFIX).removesuffix(suffix)
    return None


def recorded_states(
    couches: Mapping[str, CouchClient], recorded: dict | None, changed_at: Mapping[str, str]
) -> dict[str, ReplicationStatus]:
    """The state of each replicator doc id in `changed_at` (id -> when its share last
    changed), from `recorded` (the doc `STATES_DOC_ID`) and one request per server, whatever
    their number. `couches` names the server each doc id lives on."""
    if not changed_at:
        return {}
    by_server: dict[CouchClient, list[str]] = {}
    for doc_id in changed_at:
        by_server.setdefault(couches[doc_id], []).append(doc_id)
    present = set()
    for couch, keys in by_server.items():
        rows = couch.post(REPLICATOR_DB, "_all_docs", json={"keys": keys})["rows"]
        present |= {r["key"] for r in rows if "value" in r and not r["value"].get("deleted")}
    recorded = recorded or {}
    as_of = recorded.get("checked_at")
    states = {}
    for doc_id, changed in changed_at.items():
        entry = (recorded.get("states") or {}).get(doc_id)
        if doc_id not in present:
            states[doc_id] = ReplicationStatus(state="missing")
        elif as_of is None or as_of < changed:
            states[doc_id] = ReplicationStatus(state="unknown")
        elif entry is not None:
            states[doc_id] = ReplicationStatus(entry["state"], error=entry["error"], as_of=as_of)
        else:
            others = recorded.get("others", RUNNING)
            states[doc_id] = ReplicationStatus(state=others, as_of=as_of)
    return states


def failing_runs(
    live: Callable[[str], ReplicationStatus], recorded: dict | None, changed_at: str
) -> Callable[[str], ReplicationStatus]:
    """On-change mode: CouchDB shows a held doc `idle` (its `completed`) whatever the runs
    do. So a replication whose runs fail, as recorded since its share last changed (`recorded`
    is the doc `STATES_DOC_ID`), is shown as recorded; any other as `live` says."""
    entries = (recorded or {}).get("states") or {}
    as_of = (recorded or {}).get("checked_at")

    def status(doc_id: str) -> ReplicationStatus:
        entry = entries.get(doc_id)
        if entry is None or entry["state"] not in FAILING or as_of is None or as_of < changed_at:
            return live(doc_id)
        return ReplicationStatus(entry["state"], error=entry["error"], as_of=as_of)

    return status
