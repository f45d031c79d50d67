"""When the on-change follower runs a replication, with CouchDB's answers scripted by
`responses`: each run is a transient `POST /_replicate` of its held doc, writes during a
run coalesce into one run after it, at most `max_runs` go at once, the longest due first,
a failed run is tried again after a backoff, and unknown changes sweep rarely.

A run "in progress" here is a worker launched and not yet carried out. The real replicator
running these docs is in `test_on_change`."""

import json
import re

import pytest
import responses

from service.couch import CouchClient, CouchUnavailable
from service.metrics import REPLICATIONS_DUE
from service.sharing.core.sites import Site, Sites
from service.sharing.watching import runs as runs_module
from service.sharing.watching.checkpoints import Checkpoints
from service.sharing.watching.followers import one_pass
from service.sharing.watching.replications import Replications
from service.sharing.watching.runs import REPLICATOR_CHECKPOINT_ID, RETRY_SECONDS, RunOnChange

URL = "http://couch.test"
BROKER = "broker_state"


def replicator_doc(n: int, state: str | None = "completed", source: str = "owner") -> dict:
    """A held doc (its state `completed`, as the broker writes it), or one CouchDB runs."""
    doc = {
        "_id": f"sharing-broker-share{n}-owner-to-recipient",
        "_rev": f"{n}-abc",
        "source": {"url": f"{URL}/{source}-{n}", "auth": {"basic": {"password": "pw"}}},
        "target": {"url": f"{URL}/recipient-{n}"},
        "selector": {"type": "item"},
        "create_target": False,
        "continuous": False,
        "sharing_broker": {"broker": BROKER, "share_id": f"share{n}"},
    }
    if state:
        doc["_replication_state"] = state
    return doc


class Scripted:
    """A server whose `_replicator` holds `docs` (doc id -> doc), written in that order at
    seqs 1, 2, ..., as `_changes` and reads show them; the bodies posted to `_replicate`
    are kept in `runs`, and a source named in `failing` makes its run fail. The state
    database holds the runs' saved `_replicator` position, `saved` (a seq), if given."""

    def __init__(self, mock: responses.RequestsMock, docs: list[dict], saved: int | None = None):
        self.docs = {doc["_id"]: doc for doc in docs}
        self.seqs = {doc_id: seq for seq, doc_id in enumerate(self.docs, 1)}
        self.saved = None if saved is None else {"default": str(saved)}
        self.runs: list[dict] = []
        self.failing: set[str] = set()
        mock.add_callback("GET", f"{URL}/_replicator/_changes", callback=self._changes)
        for doc_id in self.docs:
            mock.add_callback("GET", f"{URL}/_replicator/{doc_id}", callback=self._read)
        mock.add_callback("POST", f"{URL}/_replicate", callback=self._replicate)
        position = f"{URL}/{BROKER}/{REPLICATOR_CHECKPOINT_ID}"
        mock.add_callback("GET", position, callback=self._position)
        mock.add_callback("PUT", position, callback=self._save_position)

    def write(self, doc: dict) -> None:
        """Write a doc into `_replicator`, after every other."""
        self.docs[doc["_id"]] = doc
        self.seqs[doc["_id"]] = max(self.seqs.values(), default=0) + 1

    def _changes(self, request):
        since = int(request.params.get("since", "0"))
        written = sorted((seq, doc_id) for doc_id, seq in self.seqs.items() if seq > since)
        results = [{"id": i, "seq": str(seq), "doc": self.docs[i]} for seq, i in written]
        last = max([since, *self.seqs.values()])
        return 200, {}, json.dumps({"results": results, "last_seq": str(last)})

    def _position(self, request):
        if self.saved is None:
            return 404, {}, json.dumps({"error": "not_found", "reason": "missing"})
        body = {"_id": REPLICATOR_CHECKPOINT_ID, "_rev": "1-a", "since": self.saved}
        return 200, {}, json.dumps(body)

    def _save_position(self, request):
        self.saved = json.loads(request.body)["since"]
        return 201, {}, json.dumps({"ok": True, "rev": "2-b"})

    def _read(self, request):
        doc = self.docs.get(request.path_url.split("?")[0].rsplit("/", 1)[1])
        if doc is None:
            return 404, {}, json.dumps({"error": "not_found", "reason": "deleted"})
        return 200, {}, json.dumps(doc)

    def _replicate(self, request):
        body = json.loads(request.body)
        self.runs.append(body)
        if body["source"]["url"].rsplit("/", 1)[1] in self.failing:
            reason = {"error": "db_not_found", "reason": f"could not open {body['source']['url']}"}
            return 500, {}, json.dumps(reason)
        return 200, {}, json.dumps({"ok": True, "source_last_seq": "5-run", "history": []})

    def run_ids(self) -> list[str]:
        return [body["source"]["url"].rsplit("/", 1)[1] for body in self.runs]


class Workers:
    """Launched workers, carried out only when the test says: until then, a run is in
    progress."""

    def __init__(self):
        self.waiting: list = []

    def launch(self, work) -> None:
        self.waiting.append(work)

    def finish(self) -> None:
        while self.waiting:
            self.waiting.pop(0)()


@pytest.fixture
def mock():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def workers():
    return Workers()


def runs_over(
    workers: Workers,
    max_runs: int = 10,
    sweep_seconds: float = 60.0,
    restored: list | None = None,
    save_seconds: float = 30.0,
) -> RunOnChange:
    """The on-change runs; the share ids it asks to restore go into `restored`."""
    couch = CouchClient(URL, "admin", "pw")
    sites = Sites([Site("default", couch, URL, access=None, identity=None)])
    restored = restored if restored is not None else []

    def restore(share_id: str) -> bool:
        restored.append(share_id)
        return True

    replications = Replications(sites, BROKER)
    positions = Checkpoints(couch, BROKER, REPLICATOR_CHECKPOINT_ID, every=save_seconds)
    return RunOnChange(
        sites, replications, max_runs, restore, positions, sweep_seconds, workers.launch
    )


def doc_id(n: int) -> str:
    return f"sharing-broker-share{n}-owner-to-recipient"


def read_first(runs: RunOnChange, workers: Workers) -> None:
    """The first look at `_replicator`, with no saved position: each doc runs once."""
    runs.run(set())
    workers.finish()


def test_a_run_is_a_transient_replication_of_the_held_doc(mock, workers):
    server = Scripted(mock, [replicator_doc(1)])
    runs = runs_over(workers)

    assert runs.run(set()) == [doc_id(1)]  # its doc was written: due
    workers.finish()

    [body] = server.runs
    assert body == {
        "source": {"url": f"{URL}/owner-1", "auth": {"basic": {"password": "pw"}}},
        "target": {"url": f"{URL}/recipient-1"},
        "selector": {"type": "item"},
        "create_target": False,
        "continuous": False,
    }
    assert runs.states_on("default") == {} and not runs.pending


def test_a_write_during_a_run_makes_one_more_run_after_it(mock, workers):
    server = Scripted(mock, [replicator_doc(1)])
    runs = runs_over(workers)
    read_first(runs, workers)

    assert runs.run({"owner-1"}) == [doc_id(1)]
    assert runs.states_on("default") == {doc_id(1): {"state": "running", "error": None}}
    assert runs.run({"owner-1"}) == []  # due, but running: not started beside it
    assert runs.run({"owner-1"}) == []  # a second write coalesces with the first
    workers.finish()  # the run ends, and its worker runs it once more

    assert server.run_ids() == ["owner-1"] * 3  # the first look's, the write's, one after
    assert runs.run(set()) == [] and not runs.pending


def test_a_doc_with_siblings_is_restored_before_it_runs(mock, workers):
    """Two replicas wrote it at once through two nodes: the scope it shows may be the
    older one. It is not run as it is; once restored, it runs."""
    sibling = replicator_doc(1) | {"_conflicts": ["3-older"]}
    server = Scripted(mock, [sibling])
    restored: list[str] = []
    runs = runs_over(workers, restored=restored)

    assert runs.run({"owner-1"}) == [doc_id(1)]
    workers.finish()
    assert restored == ["share1"] and runs.pending  # still due
    assert server.runs == []
    server.docs[doc_id(1)].pop("_conflicts")  # as restoring it leaves it
    assert runs.run(set()) == [doc_id(1)]
    workers.finish()
    assert restored == ["share1"] and server.run_ids() == ["owner-1"]


def test_a_doc_couchdb_would_run_itself_is_restored_not_run(mock, workers):
    """Written in continuous mode and moved over, or by a broker that let CouchDB run its
    one-shot docs: it is written again held before the broker runs it."""
    server = Scripted(mock, [replicator_doc(1, state=None)])
    restored: list[str] = []
    runs = runs_over(workers, restored=restored)

    runs.run({"owner-1"})
    workers.finish()

    assert restored == ["share1"] and server.runs == []


def test_only_the_replications_reading_from_a_moved_database_run(mock, workers):
    server = Scripted(mock, [replicator_doc(1), replicator_doc(2)])
    runs = runs_over(workers)
    read_first(runs, workers)

    assert runs.run({"recipient-1", "owner-2"}) == [doc_id(2)]
    workers.finish()

    assert server.run_ids() == ["owner-1", "owner-2", "owner-2"]


def test_at_most_max_runs_go_at_once_the_longest_due_first(mock, workers):
    server = Scripted(mock, [replicator_doc(n) for n in range(1, 5)], saved=4)
    runs = runs_over(workers, max_runs=2)  # all four were dealt with: only changes run

    assert runs.run({"owner-1"}) == [doc_id(1)]
    assert runs.run({"owner-2"}) == [doc_id(2)]
    for n in (4, 3):  # due in this order, while two run
        assert runs.run({f"owner-{n}"}) == []

    workers.finish()  # a run that ends starts the longest due in its slot, with no pass

    assert server.run_ids() == ["owner-1", "owner-2", "owner-4", "owner-3"]
    assert runs.run(set()) == [] and not runs.pending


def test_the_longest_due_starts_first_when_one_slot_frees(mock, workers):
    server = Scripted(mock, [replicator_doc(n) for n in range(1, 4)], saved=3)
    runs = runs_over(workers, max_runs=1)
    runs.run({"owner-1"})
    for n in (3, 2):
        runs.run({f"owner-{n}"})

    workers.finish()

    assert server.run_ids() == ["owner-1", "owner-3", "owner-2"]  # so none starves


def test_a_failed_run_shows_why_and_is_tried_again_after_a_backoff(mock, workers, monkeypatch):
    server = Scripted(mock, [replicator_doc(1)])
    server.failing.add("owner-1")
    runs = runs_over(workers)
    clock = [1000.0]
    monkeypatch.setattr(runs_module.time, "monotonic", lambda: clock[0])
    read_first(runs, workers)

    [state] = runs.states_on("default").values()
    assert state["state"] == "crashing" and "500 db_not_found" in state["error"]
    assert "pw" not in state["error"]
    assert runs.run({"owner-1"}) == []  # a write during the backoff waits it out
    assert runs.pending  # to be tried again: not settled
    runs.run({"owner-1"})  # and so does one during the failed run's retry below
    clock[0] += RETRY_SECONDS
    assert runs.run(set()) == [doc_id(1)]
    runs.run({"owner-1"})
    workers.finish()  # it fails again: the write during it waits out a longer backoff
    assert runs.run(set()) == [] and runs.pending
    clock[0] += 2 * RETRY_SECONDS
    server.failing.clear()
    assert runs.run(set()) == [doc_id(1)]
    workers.finish()

    assert server.run_ids() == ["owner-1"] * 3
    assert runs.states_on("default") == {} and not runs.pending


class Sources:
    """What the sources' `_changes` (through a selector) and the targets' `_revs_diff`
    answer: `changes` by source database, `missing` by target database."""

    def __init__(self, mock: responses.RequestsMock, nodes: int = 1):
        self.changes: dict[str, list[dict]] = {}
        self.missing: dict[str, dict] = {}
        self.asked: list[tuple[str, dict]] = []
        members = {"cluster_nodes": [f"couchdb@node{n}" for n in range(nodes)]}
        mock.add("GET", f"{URL}/_membership", json=members)
        mock.add_callback("POST", re.compile(f"{URL}/[a-z0-9-]+/_changes"), self._changes)
        mock.add_callback("POST", re.compile(f"{URL}/[a-z0-9-]+/_revs_diff"), self._revs_diff)

    def _changes(self, request):
        db = request.path_url.split("/")[1]
        self.asked.append((db, dict(request.params)))
        body = {"results": self.changes.get(db, []), "last_seq": "9-asked"}
        return 200, {}, json.dumps(body)

    def _revs_diff(self, request):
        return 200, {}, json.dumps(self.missing.get(request.path_url.split("/")[1], {}))


def test_a_run_whose_target_holds_all_it_would_carry_is_spared(mock, workers):
    """The way back of a write that just crossed: its source's changes since the last
    run are the docs just carried, and the target has their revisions."""
    server = Scripted(mock, [replicator_doc(1)])
    sources = Sources(mock)
    runs = runs_over(workers)
    read_first(runs, workers)  # a run: where it left the source is known
    sources.changes["owner-1"] = [{"id": "item-1", "changes": [{"rev": "2-b"}]}]

    runs.run({"owner-1"})
    workers.finish()

    assert server.run_ids() == ["owner-1"]  # the first run only
    [(db, params)] = sources.asked
    assert (db, params["since"], params["filter"], params["style"]) == (
        "owner-1",
        "5-run",
        "_selector",
        "all_docs",
    )
    sources.missing["recipient-1"] = {"item-1": {"missing": ["3-c"]}}
    runs.run({"owner-1"})
    workers.finish()
    assert server.run_ids() == ["owner-1", "owner-1"]  # it lacks one: run
    assert sources.asked[-1][1]["since"] == "9-asked"  # on from where the last question left


def test_on_a_cluster_no_run_is_spared(mock, workers):
    """A cluster answers `_changes` from one copy of each shard, which may lack a write
    the others have: asked there, a write could be taken for carried, and left behind."""
    server = Scripted(mock, [replicator_doc(1)])
    sources = Sources(mock, nodes=3)
    runs = runs_over(workers)
    read_first(runs, workers)
    sources.changes["owner-1"] = [{"id": "item-1", "changes": [{"rev": "2-b"}]}]

    runs.run({"owner-1"})
    workers.finish()

    assert server.run_ids() == ["owner-1", "owner-1"]  # run again, not asked
    assert sources.asked == []


def test_a_changed_scope_or_a_failed_run_is_run_not_asked(mock, workers, monkeypatch):
    server = Scripted(mock, [replicator_doc(1)])
    sources = Sources(mock)
    runs = runs_over(workers)
    clock = [1000.0]
    monkeypatch.setattr(runs_module.time, "monotonic", lambda: clock[0])
    read_first(runs, workers)
    server.docs[doc_id(1)]["selector"] = {"type": "collection"}  # another checkpoint
    runs.run({"owner-1"})
    workers.finish()
    assert sources.asked == [] and server.run_ids() == ["owner-1"] * 2

    sources.changes["owner-1"] = [{"id": "item-1", "changes": [{"rev": "2-b"}]}]
    sources.missing["recipient-1"] = {"item-1": {"missing": ["2-b"]}}
    server.failing.add("owner-1")
    runs.run({"owner-1"})  # asked, lacks one, runs, and the run fails
    workers.finish()
    server.failing.clear()
    sources.missing.clear()
    clock[0] += RETRY_SECONDS
    runs.run(set())
    workers.finish()

    assert len(sources.asked) == 1  # the retry is a run: what the failed one left is unknown
    assert server.run_ids() == ["owner-1"] * 4


def test_unknown_changes_make_everything_due_at_most_once_a_sweep(mock, workers):
    Scripted(mock, [replicator_doc(1), replicator_doc(2)])
    runs = runs_over(workers, sweep_seconds=3600)

    assert sorted(runs.run(None)) == [doc_id(1), doc_id(2)]
    workers.finish()
    assert runs.run(None) == []  # within the sweep's time: nothing made due again


def test_a_continuous_or_removed_doc_is_not_run(mock, workers):
    continuous = replicator_doc(1) | {"continuous": True}
    server = Scripted(mock, [continuous, replicator_doc(2)], saved=2)
    runs = runs_over(workers)
    assert runs.run(set()) == []  # both known, neither written since the saved position
    del server.docs[doc_id(2)]

    runs.run({"owner-1", "owner-2"})
    workers.finish()

    assert server.runs == [] and not runs.pending


@pytest.mark.parametrize(("answer", "warned"), [(404, True), ("5000", True), ("0", False)])
def test_a_server_that_holds_runs_back_is_named_once(mock, workers, caplog, answer, warned):
    Scripted(mock, [replicator_doc(1)])
    config = f"{URL}/_node/_local/_config/replicator/startup_jitter"
    if answer == 404:
        mock.get(config, status=404, json={"error": "not_found", "reason": "unknown_config_value"})
    else:
        mock.get(config, json=answer)
    runs = runs_over(workers)

    runs.run({"owner-1"})
    runs.run({"owner-1"})

    warnings = [r for r in caplog.records if "startup_jitter" in r.getMessage()]
    assert len(warnings) == (1 if warned else 0)


@pytest.mark.parametrize(
    ("upgrade", "rounds", "warned"),
    [
        (404, 404, True),
        ("true", "600000", True),
        ("false", "600000", False),
        ("true", "1000", False),  # the tests' servers: a cold login costs next to nothing
    ],
)
def test_a_server_that_hashes_share_passwords_again_is_named_once(
    mock, workers, caplog, upgrade, rounds, warned
):
    Scripted(mock, [replicator_doc(1)])
    unset = {"error": "not_found", "reason": "unknown_config_value"}
    for key, answer in (("upgrade_hash_on_auth", upgrade), ("iterations", rounds)):
        config = f"{URL}/_node/_local/_config/chttpd_auth/{key}"
        mock.get(config, **({"status": 404, "json": unset} if answer == 404 else {"json": answer}))
    runs = runs_over(workers)

    runs.run({"owner-1"})
    runs.run({"owner-1"})

    warnings = [r for r in caplog.records if "upgrade_hash_on_auth" in r.getMessage()]
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
    """A lease this process holds throughout."""

    lease_id, seconds = "held", 30.0

    def hold(self) -> bool:
        return True

    def renew(self) -> bool:
        return True


class Failing:
    def run(self, changed):
        raise CouchUnavailable("GET /broker_state/_changes", "timed out")


@pytest.mark.parametrize(
    ("changed", "passes", "ended", "settled"),
    [
        ({"owner-2"}, [], True, True),  # nothing reads from it: dealt with, may be saved
        ({"owner-2"}, [], False, False),  # a run in progress: a restart may cut it short
        ({"owner-1"}, [], True, False),  # its run is under way: read it again after a restart
        ({"owner-2"}, [Failing()], True, False),  # a pass failed: the same
        (None, [], True, False),  # nothing known, nothing settled
    ],
)
def test_changes_settle_only_once_every_pass_dealt_with_them(
    mock, workers, changed, passes, ended, settled
):
    Scripted(mock, [replicator_doc(1)])
    runs = runs_over(workers)
    runs.run(set())  # owner-1's first run
    if ended:
        workers.finish()
    updates = Updates(changed)

    one_pass([runs, *passes], Held(), updates)

    assert updates.settled_times == (1 if settled else 0)


def test_a_restart_runs_the_docs_written_since_the_saved_position(mock, workers):
    """Not every doc: the first two were dealt with when the position was saved."""
    server = Scripted(mock, [replicator_doc(n) for n in range(1, 4)], saved=2)
    runs = runs_over(workers)

    assert runs.run(set()) == [doc_id(3)]
    workers.finish()
    assert server.run_ids() == ["owner-3"]


def test_the_position_is_saved_once_nothing_is_left_to_do(mock, workers):
    server = Scripted(mock, [replicator_doc(1), replicator_doc(2)])
    runs = runs_over(workers, save_seconds=0)
    runs.run(set())  # nothing saved: each runs once
    runs.run(set())
    assert server.saved is None  # the runs have not ended

    workers.finish()
    runs.run(set())

    assert server.saved == {"default": "2"}
    server.write(replicator_doc(3))
    assert runs_over(workers).run(set()) == [doc_id(3)]  # a new process: the new doc only


def test_a_position_is_saved_at_most_every_so_often(mock, workers):
    """Positions move with every pass: one save now, the next once `every` has passed."""
    server = Scripted(mock, [replicator_doc(n) for n in range(1, 4)], saved=1)
    runs = runs_over(workers, save_seconds=3600)
    runs.run(set())  # reads the saved position: docs 2 and 3 were written since
    workers.finish()
    runs.run(set())  # nothing left to do: saved, the first time in this process

    assert server.saved == {"default": "3"}
    server.write(replicator_doc(2))  # written again
    runs.run({"_replicator"})
    workers.finish()
    runs.run(set())  # nothing left to do again, but within the hour: not saved

    assert server.saved == {"default": "3"}


def test_a_sweep_waits_behind_changes_and_takes_a_quarter_of_the_runs(mock, workers):
    """Nothing saved: all eight docs are swept, one at a time (a quarter of four runs);
    the writes that come meanwhile start first."""
    server = Scripted(mock, [replicator_doc(n) for n in range(1, 9)])
    runs = runs_over(workers, max_runs=4)

    assert runs.run({"owner-5"}) == [doc_id(5), doc_id(1)]
    assert runs.run({"owner-7"}) == [doc_id(7)]  # one sweep run at a time
    assert runs.run({"owner-8"}) == [doc_id(8)]
    assert runs.run({"owner-6"}) == []  # four run
    assert REPLICATIONS_DUE._value.get() == 4  # 6 and the sweep's 2, 3 and 4
    workers.finish()  # each run that ends frees a slot: the write's first, then the sweep's

    order = ["owner-5", "owner-1", "owner-7", "owner-8", "owner-6", "owner-2", "owner-3"]
    assert server.run_ids() == [*order, "owner-4"]
    assert not runs.pending and REPLICATIONS_DUE._value.get() == 0


def test_a_doc_another_pass_read_first_still_runs(mock, workers):
    """The branch watch reads `_replicator` too, between two passes of the runs: a doc it
    read first is still due at the next."""
    server = Scripted(mock, [replicator_doc(1)], saved=1)
    runs = runs_over(workers)
    assert runs.run(set()) == []
    server.write(replicator_doc(2))

    runs.replications.refresh()  # as the branch watch does

    assert runs.run(set()) == [doc_id(2)]
