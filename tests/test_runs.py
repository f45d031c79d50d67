"""When the on-change follower starts a run, with CouchDB's answers scripted by `responses`:
a run in progress is never written over, writes during it coalesce into one run after it,
at most `max_runs` go at once, the longest due first, and unknown changes sweep rarely.

The real replicator running these docs is in `test_on_change`."""

import json

import pytest
import responses

from service.couch import CouchClient, CouchUnavailable
from service.sharing.core.sites import Site, Sites
from service.sharing.watching.followers import one_pass
from service.sharing.watching.replications import Replications
from service.sharing.watching.runs import RunOnChange

URL = "http://couch.test"
BROKER = "broker_state"


def replicator_doc(n: int, state: str | None = None, source: str = "owner") -> dict:
    doc = {
        "_id": f"sharing-broker-share{n}-owner-to-recipient",
        "_rev": f"{n}-abc",
        "source": {"url": f"{URL}/{source}-{n}", "auth": {"basic": {"password": "pw"}}},
        "target": {"url": f"{URL}/recipient-{n}"},
        "continuous": False,
        "sharing_broker": {"broker": BROKER, "share_id": f"share{n}"},
    }
    if state:
        doc |= {"_replication_state": state, "_replication_stats": {"docs_written": 1}}
    return doc


class Scripted:
    """A server whose `_replicator` holds `docs` (doc id -> doc), as `_changes`, `_all_docs`
    and `_bulk_docs` show it; the bodies written are kept in `written`."""

    def __init__(self, mock: responses.RequestsMock, docs: list[dict]):
        self.docs = {doc["_id"]: doc for doc in docs}
        self.written: list[list[dict]] = []
        self.conflicts: set[str] = set()
        changes = {
            "results": [{"id": d["_id"], "seq": "1", "doc": d} for d in docs],
            "last_seq": "1",
        }
        mock.get(f"{URL}/_replicator/_changes", json=changes)
        mock.add_callback("POST", f"{URL}/_replicator/_all_docs", callback=self._all_docs)
        mock.add_callback("POST", f"{URL}/_replicator/_bulk_docs", callback=self._bulk_docs)

    def _all_docs(self, request):
        keys = json.loads(request.body)["keys"]
        rows = [{"key": k, "doc": self.docs.get(k)} for k in keys]
        return 200, {}, json.dumps({"rows": rows})

    def _bulk_docs(self, request):
        docs = json.loads(request.body)["docs"]
        self.written.append(docs)
        results = []
        for doc in docs:
            if doc["_id"] in self.conflicts:
                results.append({"id": doc["_id"], "error": "conflict"})
            else:
                self.docs[doc["_id"]] = doc  # no state: CouchDB runs it
                results.append({"id": doc["_id"], "ok": True, "rev": "2-new"})
        return 201, {}, json.dumps(results)

    def end_runs(self) -> None:
        """Every run in progress ends, as CouchDB writes it into the doc."""
        for doc in self.docs.values():
            doc.setdefault("_replication_state", "completed")

    def written_ids(self) -> list[list[str]]:
        return [[doc["_id"] for doc in batch] for batch in self.written]


@pytest.fixture
def mock():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def runs_over(
    max_runs: int = 10, sweep_seconds: float = 60.0, restored: list | None = None
) -> RunOnChange:
    """The on-change runs; the share ids it asks to restore go into `restored`."""
    couch = CouchClient(URL, "admin", "pw")
    sites = Sites([Site("default", couch, URL, editors=None, identity=None)])
    restored = restored if restored is not None else []

    def restore(share_id: str) -> bool:
        restored.append(share_id)
        return True

    return RunOnChange(sites, Replications(sites, BROKER), max_runs, restore, sweep_seconds)


def doc_id(n: int) -> str:
    return f"sharing-broker-share{n}-owner-to-recipient"


def test_a_write_during_a_run_makes_one_more_run_after_it(mock):
    server = Scripted(mock, [replicator_doc(1)])  # no state yet: its run is in progress
    runs = runs_over()

    assert runs.run({"owner-1"}) == []  # due, but running: not written over
    assert runs.run({"owner-1"}) == []  # a second write coalesces with the first
    server.end_runs()
    assert runs.run(set()) == [doc_id(1)]  # the run after it
    assert runs.run(set()) == []  # once

    assert server.written_ids() == [[doc_id(1)]]
    [body] = server.written[0]
    assert "_replication_state" not in body and "_replication_stats" not in body
    assert body["_rev"] == "1-abc" and body["source"]["auth"]["basic"]["password"] == "pw"


def test_a_doc_with_siblings_is_restored_before_it_runs_again(mock):
    """CouchDB wrote a run's end beside the broker's last write: the scope it shows may be
    the older one. It is not run as it is; once restored, it runs."""
    sibling = replicator_doc(1, "completed") | {"_conflicts": ["3-older"]}
    server = Scripted(mock, [sibling])
    restored: list[str] = []
    runs = runs_over(restored=restored)

    assert runs.run({"owner-1"}) == []
    assert restored == ["share1"] and runs.pending  # still due
    assert server.written == []
    server.docs[doc_id(1)].pop("_conflicts")  # as restoring it leaves it
    assert runs.run(set()) == [doc_id(1)]
    assert restored == ["share1"] and not runs.pending


def test_only_the_replications_reading_from_a_moved_database_run(mock):
    server = Scripted(mock, [replicator_doc(1, "completed"), replicator_doc(2, "completed")])
    runs = runs_over()

    assert runs.run({"recipient-1", "owner-2"}) == [doc_id(2)]

    assert server.written_ids() == [[doc_id(2)]]


def test_at_most_max_runs_go_at_once_the_longest_due_first(mock):
    server = Scripted(mock, [replicator_doc(n, "completed") for n in range(1, 5)])
    runs = runs_over(max_runs=2)

    assert runs.run({"owner-1"}) == [doc_id(1)]
    assert runs.run({"owner-2"}) == [doc_id(2)]
    for n in (4, 3):  # due in this order, while two run
        assert runs.run({f"owner-{n}"}) == []
    server.end_runs()
    assert runs.run(set()) == [doc_id(4), doc_id(3)]

    assert server.written_ids() == [[doc_id(1)], [doc_id(2)], [doc_id(4), doc_id(3)]]


def test_the_longest_due_starts_first_when_one_slot_frees(mock):
    server = Scripted(mock, [replicator_doc(n, "completed") for n in range(1, 4)])
    runs = runs_over(max_runs=1)
    runs.run({"owner-1"})
    for n in (3, 2):
        runs.run({f"owner-{n}"})

    server.end_runs()
    assert runs.run(set()) == [doc_id(3)]
    server.end_runs()
    assert runs.run(set()) == [doc_id(2)]  # so none starves


def test_a_conflicting_write_leaves_the_run_due(mock):
    server = Scripted(mock, [replicator_doc(1, "completed")])
    server.conflicts.add(doc_id(1))
    runs = runs_over()

    assert runs.run({"owner-1"}) == []
    server.conflicts.clear()
    assert runs.run(set()) == [doc_id(1)]


def test_unknown_changes_make_everything_due_at_most_once_a_sweep(mock):
    server = Scripted(mock, [replicator_doc(1, "completed"), replicator_doc(2, "completed")])
    runs = runs_over(sweep_seconds=3600)

    assert sorted(runs.run(None)) == [doc_id(1), doc_id(2)]
    server.end_runs()
    assert runs.run(None) == []  # within the sweep's time: nothing made due again


def test_a_continuous_or_removed_doc_is_not_started(mock):
    continuous = replicator_doc(1, "completed") | {"continuous": True}
    server = Scripted(mock, [continuous, replicator_doc(2, "completed")])
    runs = runs_over()
    runs.replications.refresh()
    del server.docs[doc_id(2)]

    assert runs.run({"owner-1", "owner-2"}) == []
    assert server.written == []


@pytest.mark.parametrize(("answer", "warned"), [(404, True), ("5000", True), ("0", False)])
def test_a_server_that_holds_runs_back_is_named_once(mock, caplog, answer, warned):
    Scripted(mock, [replicator_doc(1, "completed")])
    config = f"{URL}/_node/_local/_config/replicator/startup_jitter"
    if answer == 404:
        mock.get(config, status=404, json={"error": "not_found", "reason": "unknown_config_value"})
    else:
        mock.get(config, json=answer)
    runs = runs_over()

    runs.run({"owner-1"})
    runs.run({"owner-1"})

    warnings = [r for r in caplog.records if "startup_jitter" in r.getMessage()]
    assert len(warnings) == (1 if warned else 0)


class Updates:
    """`DatabaseUpdates` as the followers loop sees it: what changed, and what it settled."""

    def __init__(self, changed: set[str] | None):
        self.changes = changed
        self.settled_times = 0

    def changed(self, wait: float = 0.0) -> set[str] | None:
        return self.changes

    def settled(self) -> None:
        self.settled_times += 1


class Held:
    def hold(self) -> bool:
        return True


class Failing:
    def run(self, changed):
        raise CouchUnavailable("GET /broker_state/_changes", "timed out")


@pytest.mark.parametrize(
    ("changed", "passes", "settled"),
    [
        ({"owner-2"}, [], True),  # nothing reads from it: dealt with, may be saved
        ({"owner-1"}, [], False),  # its run is still due: read it again after a restart
        ({"owner-2"}, [Failing()], False),  # a pass failed: the same
        (None, [], False),  # nothing known, nothing settled
    ],
)
def test_changes_settle_only_once_every_pass_dealt_with_them(mock, changed, passes, settled):
    Scripted(mock, [replicator_doc(1)])  # running: a write to owner-1 stays due
    updates = Updates(changed)

    one_pass([runs_over(), *passes], Held(), updates)

    assert updates.settled_times == (1 if settled else 0)
