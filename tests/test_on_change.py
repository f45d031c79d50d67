"""On-change mode on real Apache CouchDB: the broker runs each replication, transient, when
its source database moves; CouchDB leaves the held replicator docs alone.

The followers loop runs in the background, as it does when served. Writes cross both ways,
deletions and rule-followed pictures arrive, forged branches are still taken out, status
says `idle` between runs, and fifty read-write shares (a hundred replications, twice the
`max_jobs` the test sets) all carry a write while CouchDB never runs more jobs than that.
Reconcile moves continuous shares over, a restarted follower reads on from where the last
one left, and a rewrite that races the replicator's own write into its doc goes through.
"""

import dataclasses
import time

import pytest

from service.app import create_app
from service.config import CONTINUOUS, DEFAULT_SERVER, ON_CHANGE
from service.couch import CouchClient
from service.metrics import REPLICATION_RUNS, REPLICATION_RUNS_SPARED
from service.sharing.core.model import place
from service.sharing.placing.guard import member_role
from service.sharing.placing.parts import ensure_current
from service.sharing.placing.replicator import REPLICATOR_DB
from tests.conftest import ADMIN_TOKEN
from tests.helpers import (
    create_share,
    doc_state,
    remove_broker_footprint,
    replicator_docs,
    wait_for,
    wait_for_docs,
)
from tests.servers.demo import ALICE
from tests.test_replication import DB_SHARING, ITEM, RW, edit, leaves, share_with_carol
from tests.test_rules import CONTAINERS, item_with_picture
from tests.test_selectors import COLLECTION_1

pytestmark = pytest.mark.couchdb
MAX_RUNS = 20


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, replication_mode=ON_CHANGE, max_runs=MAX_RUNS)


def states(couch, share: dict) -> set[str]:
    """The `_replication_state` of each of the share's replicator docs (None: not ended)."""
    return {doc.get("_replication_state") for doc in replicator_docs(couch, share["id"]).values()}


def revisions(couch, share: dict) -> dict[str, str]:
    """Each of the share's replicator docs' revision, and its siblings' if any."""
    docs = replicator_docs(couch, share["id"]).keys()
    found = {}
    for doc_id in docs:
        doc = couch.get(f"_replicator/{doc_id}", conflicts="true")
        found[doc_id] = (doc["_rev"], tuple(doc.get("_conflicts", ())))
    return found


def first_runs_copied(couch, dbs) -> None:
    """Wait for the docs a share of collection 1 copies to Bob's database."""
    wait_for_docs(couch, dbs["bob"], COLLECTION_1, "the first run's docs")


def test_the_replicator_docs_are_held_and_the_broker_runs_them(
    client, couch, registered, dbs, followers
):
    share = create_share(client, **RW)
    held = revisions(couch, share)

    assert {doc["continuous"] for doc in replicator_docs(couch, share["id"]).values()} == {False}
    assert states(couch, share) == {"completed"}  # so CouchDB leaves them alone
    wait_for_docs(couch, dbs["bob"], COLLECTION_1 | {DB_SHARING}, "the first runs' docs")
    rev = edit(couch, dbs["bob"], ITEM, name="from Bob")
    wait_for(lambda: rev in leaves(couch, dbs["alice"], ITEM), "Bob's edit at Alice's")
    jobs = couch.get("_scheduler/docs/_replicator")["docs"]
    assert not [job for job in jobs if job["doc_id"] in held and job["state"] != "completed"]
    assert revisions(couch, share) == held  # no run wrote into them: no siblings can grow


def test_an_owners_write_and_deletion_reach_the_recipient(
    client, couch, registered, dbs, followers
):
    create_share(client)
    first_runs_copied(couch, dbs)

    rev = edit(couch, dbs["alice"], ITEM, name="Alice's edit")
    wait_for(lambda: rev in leaves(couch, dbs["bob"], ITEM), "the edit at Bob's", couch=couch)
    couch.delete_doc(dbs["alice"], ITEM)
    wait_for(lambda: doc_state(couch, dbs["bob"], ITEM) == "deleted", "the deletion", couch=couch)


def test_in_read_write_the_recipients_edit_reaches_the_owner(
    client, couch, registered, dbs, followers
):
    create_share(client, **RW)
    first_runs_copied(couch, dbs)

    rev = edit(couch, dbs["bob"], ITEM, name="Bob's edit")

    wait_for(lambda: rev in leaves(couch, dbs["alice"], ITEM), "Bob's edit", couch=couch)


def test_a_burst_of_writes_all_arrive(client, couch, registered, dbs, followers):
    """Writes during a run make it run once more after it: none is left behind."""
    create_share(client)
    first_runs_copied(couch, dbs)

    revs = [edit(couch, dbs["alice"], ITEM, name=f"edit {n}") for n in range(12)]

    wait_for(lambda: revs[-1] in leaves(couch, dbs["bob"], ITEM), "the last edit", couch=couch)


def test_a_share_between_runs_is_idle_not_failed(app, client, couch, registered, dbs, followers):
    share = create_share(client, **RW)
    first_runs_copied(couch, dbs)

    live = client.get(f"/v1/shares/{share['id']}").get_json()["replications"]
    app.extensions["sharing_broker"].state_recorder().run()
    listed = client.get(f"/v1/shares?database={ALICE}&with_status=true").get_json()["items"]

    assert [r["replication_status"]["state"] for r in live] == ["idle", "idle"]
    recorded = listed[0]["replications"]
    assert [r["replication_status"]["state"] for r in recorded] == ["idle", "idle"]
    assert all(r["replication_status"]["as_of"] for r in recorded)


def test_runs_that_fail_show_crashing_are_told_and_recover(app, client, couch, registered, dbs):
    """CouchDB shows a held doc `completed` whatever its runs do: the broker's runs say
    which fail, in a share's status and its list entry, and the feed tells the parties."""
    share = create_share(client)
    doc_id = share["replications"][0]["id"]
    runs, *_, recorder = app.extensions["sharing_broker"].followers()
    recorder.every_seconds = 0
    security = couch.get(f"{dbs['bob']}/_security")  # by hand: share users lose Bob's db
    members = security["members"]
    couch.put(f"{dbs['bob']}/_security", {**security, "members": {"names": members["names"]}})
    assert member_role(dbs["bob"]) in members["roles"]

    runs.run(None)  # every replication due: this one's run is refused at Bob's
    wait_for(lambda: doc_id in runs.states_on("default"), "the run failing")
    wait_for(lambda: runs.states_on("default")[doc_id]["state"] == "crashing", "it crashing")
    recorder.run()
    [live] = client.get(f"/v1/shares/{share['id']}").get_json()["replications"]
    listed = client.get(f"/v1/shares?database={ALICE}&with_status=true").get_json()["items"]
    [recorded] = listed[0]["replications"]

    assert live["replication_status"]["state"] == "crashing"
    assert dbs["bob"] in live["replication_status"]["error"]
    assert recorded["replication_status"]["state"] == "crashing"
    assert client.post("/v1/reconcile").status_code == 200  # Bob's `_security` repaired
    wait_for(lambda: runs.run(set()) or not runs.states_on("default"), "a run going through")
    wait_for(lambda: not runs.states_on("default"), "the run going through")
    recorder.run()
    [live] = client.get(f"/v1/shares/{share['id']}").get_json()["replications"]
    assert live["replication_status"]["state"] == "idle"
    told = [e["kind"] for e in client.get("/v1/events").get_json()["items"]]
    assert told[-2:] == ["replication failing", "replication recovered"]
    wait_for_docs(couch, dbs["bob"], COLLECTION_1, "the share's docs at Bob's")


def test_a_write_that_crosses_costs_one_run_and_the_way_back_is_spared(
    client, couch, registered, dbs, followers
):
    """The recipient's database moved too, with only the docs just carried: the broker
    asks it for them and spares the run back."""
    create_share(client, **RW)
    first_runs_copied(couch, dbs)
    wait_for(lambda: runs_started() == runs_started(wait=1.0), "the first runs over")
    runs, spared = runs_started(), REPLICATION_RUNS_SPARED._value.get()

    rev = edit(couch, dbs["alice"], ITEM, name="once")
    wait_for(lambda: rev in leaves(couch, dbs["bob"], ITEM), "the edit at Bob's", couch=couch)
    wait_for(lambda: REPLICATION_RUNS_SPARED._value.get() > spared, "the way back spared")

    assert runs_started() - runs == 1


def runs_started(wait: float = 0.0) -> float:
    """On-change runs started in this process, after `wait` seconds."""
    time.sleep(wait)
    return REPLICATION_RUNS._value.get()


def test_pictures_of_an_item_that_comes_to_match_follow_it(
    client, couch, registered, dbs, followers
):
    create_share(client, collections=["c0ll-uuid-1"], rules=CONTAINERS)
    new = item_with_picture(7, "container")

    couch.request("POST", f"{dbs['alice']}/_bulk_docs", json={"docs": new}).raise_for_status()

    wait_for_docs(couch, dbs["bob"], {doc["_id"] for doc in new}, "the item and its pictures")


def test_a_forged_branch_is_still_removed(client, couch, registered, dbs, followers):
    mine = {"type": "item", "data": {"collection_id": "b0b-coll-1", "name": "Bob's diary"}}
    own_rev = couch.put(f"{dbs['bob']}/item-b0b-diary", mine)["rev"]
    create_share(client, access="read", collections=None)
    forged = {"type": "item", "data": {"collection_id": "c0ll-uuid-1", "name": "read me"}}
    couch.put(f"{dbs['alice']}/item-b0b-diary", forged)
    edit(couch, dbs["alice"], "item-b0b-diary", times=3, name="read me")

    wait_for(
        lambda: leaves(couch, dbs["bob"], "item-b0b-diary") == {own_rev},
        "the forgery at Bob's removed",
        couch=couch,
    )
    assert couch.get(f"{dbs['bob']}/item-b0b-diary")["data"]["name"] == "Bob's diary"


@pytest.fixture
def max_jobs(couch):
    """CouchDB's `[replicator] max_jobs` at 50 for the test, then as it was."""
    path = f"{couch.config_path}/replicator/max_jobs"
    before = couch.request("GET", path)
    couch.set_config("replicator", "max_jobs", "50")
    yield 50
    if before.ok:
        couch.set_config("replicator", "max_jobs", before.json())
    else:
        couch.request("DELETE", path)


@pytest.fixture
def fifty_pairs(client, couch, names, settings):
    """Fifty owner and recipient databases, registered; removed after the test, once the
    shares' replications have stopped."""
    pairs = []
    for n in range(50):
        pair = []
        for side, prefix in (("a", names["alice"]), ("b", names["bob"])):
            db, uuid = f"{prefix}-{n:02d}", f"0c0c0c0c-0000-4000-8000-{side}{n:011d}"
            couch.create_db(db, [{"_id": "0000-config", "uuid": uuid}])
            assert client.post("/v1/databases", json={"database": db}).status_code == 201
            pair.append((db, uuid))
        pairs.append(tuple(pair))
    yield pairs
    remove_broker_footprint(settings.state_db, couch)
    for pair in pairs:
        for db, _ in pair:
            couch.delete(db)


def test_fifty_read_write_shares_past_max_jobs_all_carry_a_write(
    client, couch, fifty_pairs, max_jobs, followers
):
    for (_, owner), (_, recipient) in fifty_pairs:
        body = {"owner": owner, "recipient": recipient, "access": "read-write"}
        assert client.post("/v1/shares", json=body).status_code == 201
    item = {"type": "item", "data": {"name": "crossed", "collection_id": "none"}}
    for (owner, _), _ in fifty_pairs:
        couch.put(f"{owner}/item-crossed", item)
    jobs_seen = []

    def all_arrived() -> bool:
        jobs_seen.append(couch.get("_scheduler/jobs", limit="0")["total_rows"])
        return all(doc_state(couch, db, "item-crossed") == "live" for _, (db, _) in fifty_pairs)

    wait_for(all_arrived, "the write at all 50 recipients", seconds=120, couch=couch)

    assert max(jobs_seen) <= max_jobs  # so CouchDB started each run at once


def test_reconcile_moves_shares_made_in_continuous_mode_to_one_shot_runs(
    settings, couch, registered, dbs
):
    def client_of(mode: str):
        client = create_app(dataclasses.replace(settings, replication_mode=mode)).test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN_TOKEN}"
        return client

    share = create_share(client_of(CONTINUOUS), **RW)
    assert {doc["continuous"] for doc in replicator_docs(couch, share["id"]).values()} == {True}

    report = client_of(ON_CHANGE).post("/v1/reconcile").get_json()

    assert {r["part"] for r in report["repaired"]} == {
        "replication:owner-to-recipient",
        "replication:recipient-to-owner",
    }
    assert {doc["continuous"] for doc in replicator_docs(couch, share["id"]).values()} == {False}
    assert states(couch, share) == {"completed"}  # held: CouchDB's jobs for them end
    ours = set(replicator_docs(couch, share["id"]))
    wait_for(
        lambda: not ours & {j["doc_id"] for j in couch.get("_scheduler/jobs")["jobs"]},
        "CouchDB's continuous jobs stopped",
        couch=couch,
    )


def test_one_shot_docs_of_the_last_version_are_taken_over_without_a_stop(
    client, couch, registered, dbs, followers
):
    """The last version let CouchDB run one-shot docs: ended ones are held already, and
    one CouchDB still runs is written again held once its share is restored. Writes go
    on crossing, and CouchDB holds no job of the share's at the end."""
    share = create_share(client, **RW)
    first_runs_copied(couch, dbs)
    docs = replicator_docs(couch, share["id"])
    for doc_id, doc in docs.items():  # as the last version wrote them: CouchDB runs them
        current = couch.get(f"_replicator/{doc_id}")
        unheld = {k: v for k, v in doc.items() if not k.startswith("_replication_")}
        couch.put(f"_replicator/{doc_id}", {**unheld, "_rev": current["_rev"]})

    rev = edit(couch, dbs["alice"], ITEM, name="after the upgrade")

    wait_for(lambda: rev in leaves(couch, dbs["bob"], ITEM), "the edit at Bob's", couch=couch)
    wait_for(lambda: states(couch, share) == {"completed"}, "both docs held again", couch=couch)
    rev = edit(couch, dbs["bob"], ITEM, name="and back")
    wait_for(lambda: rev in leaves(couch, dbs["alice"], ITEM), "Bob's edit at Alice's")
    jobs = {job["doc_id"] for job in couch.get("_scheduler/jobs")["jobs"]}
    assert not jobs & set(docs)


def test_a_restarted_follower_reads_db_updates_on_from_where_the_last_one_left(app, couch, dbs):
    """So a restart or a new lease holder runs what moved meanwhile, not every share."""
    broker = app.extensions["sharing_broker"]
    before = broker.database_updates()
    assert before.changed() is None  # the very first look only learns where the feed is
    before.changed()
    before.settled()  # the passes dealt with what it returned: saved
    couch.put(f"{dbs['alice']}/item-while-away", {"type": "item", "data": {}})

    after = broker.database_updates()  # a new process, with nothing in memory
    seen: list[set[str] | None] = []

    def alice_seen() -> bool:
        seen.append(after.changed())
        return None in seen or dbs["alice"] in set().union(*seen)

    wait_for(alice_seen, "Alice's database among the changes", couch=couch)

    assert None not in seen


def test_a_restarted_follower_runs_what_was_written_or_moved_meanwhile(
    app, client, couch, registered, dbs, people
):
    """Not every share: where `_replicator` was read to when the runs had nothing left to
    do is saved, and a new process (a restart, a new lease holder) starts from there."""
    broker = app.extensions["sharing_broker"]
    bob, carol = create_share(client, **RW), share_with_carol(client, people)
    before = broker.on_change_runs(broker.replications(), launch=lambda work: work())
    assert len(before.run(None)) == 3  # nothing saved yet: each runs once
    before.run(set())  # nothing left to do: saved
    etag = client.get(f"/v1/shares/{carol['id']}").headers["ETag"]
    body, headers = {"access": "read-write"}, {"If-Match": etag}
    assert client.patch(f"/v1/shares/{carol['id']}", json=body, headers=headers).status_code == 200

    after = broker.on_change_runs(broker.replications(), launch=lambda work: work())
    written = after.run(set())
    moved = after.run({place(DEFAULT_SERVER, dbs["bob"])})

    assert written and set(written) <= set(replicator_docs(couch, carol["id"]))
    assert moved == [bob["replications"][1]["id"]]  # Bob's way back: his database moved


def test_a_replicator_doc_the_replicator_changed_meanwhile_is_read_again(
    app, client, couch, registered, dbs, monkeypatch
):
    """CouchDB writes a continuous job's failure into its doc (and, before runs were the
    broker's own, each one-shot run's end): a rewrite that read it just before gets 409
    from the real server, reads again and goes through."""
    share = create_share(client, **RW)
    doc_id = share["replications"][0]["id"]
    current = couch.get(f"_replicator/{doc_id}")
    wanted = {k: v for k, v in current.items() if k != "_rev"} | {"selector": {"type": "item"}}
    real_put, puts = CouchClient.put, []

    def put_after_a_concurrent_write(self, *segments, **kwargs):
        if segments[0] == REPLICATOR_DB and not puts:
            couch.put(f"_replicator/{doc_id}", {**current, "note": "written meanwhile"})
        puts.append(segments)
        return real_put(self, *segments, **kwargs)

    monkeypatch.setattr(CouchClient, "put", put_after_a_concurrent_write)

    assert ensure_current(app.extensions["sharing_broker"].couch, REPLICATOR_DB, wanted)
    assert len(puts) == 2  # the first lost to the write meanwhile
    assert couch.get(f"_replicator/{doc_id}")["selector"] == {"type": "item"}
