"""The broker on a three-node Apache CouchDB cluster, with replicas pointed at different nodes.

The state database keeps the cluster's copies, like the users' databases. There "create
this doc unless it exists" is no compare-and-set: two writers through two nodes may both be
told yes. The broker converges instead: a new share's id follows from its pair, so two
creates of one pair write one share; reconcile settles a doc left with two branches (a stop
wins over a change); a lease both takers were given settles on one holder. Access to the
users' databases needs none of it: each share writes only its own user doc. The
concurrency tests run several rounds.
The brokers run in continuous mode unless a test says `mode`: in on-change mode the broker
runs each replication itself, and nothing but the broker writes a replicator doc.
"""

import secrets
import threading
import uuid
from collections import Counter
from contextlib import contextmanager, suppress
from dataclasses import replace

import pytest

from service.app import create_app, ensure_state_db
from service.config import CONTINUOUS, ON_CHANGE, Settings
from service.couch import CouchClient
from service.sharing.core.lease import Lease
from service.sharing.watching.followers import LEASE_ID, follow_every
from tests.conftest import ADMIN_TOKEN
from tests.consistency import members, scopes
from tests.helpers import remove_broker_footprint, wait_for
from tests.servers.demo import ALICE, alice_docs

pytestmark = pytest.mark.couchdb

ROUNDS = range(3)
RECIPIENTS = 8


@pytest.fixture
def state_db():
    return f"broker_state_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def mode():
    """The replicas' replication mode; a test names another by parametrizing `mode`."""
    return CONTINUOUS


@pytest.fixture
def replicas(cluster, state_db, mode):
    """Two brokers sharing one state database, the first through node 0, the second
    through node 1."""
    clients = []
    for node in cluster.nodes[:2]:  # the same settings, but for the node each talks to
        settings = through(node, state_db, mode)
        app = create_app(replace(settings, replication_url=cluster.nodes[0].url))
        ensure_state_db(app)
        clients.append(app)
    yield clients
    remove_broker_footprint(state_db, cluster.nodes[0])


@pytest.fixture
def people(cluster, replicas):
    """Alice's database and eight recipients', each registered, each with a member."""
    node = cluster.nodes[0]
    suffix = secrets.token_hex(4)
    alice = f"inventory-alice-{suffix}"
    node.create_db(alice, alice_docs())
    node.add_member(alice, "alice")
    recipients = {}
    for i in range(RECIPIENTS):
        name, config_uuid = f"inventory-r{i}-{suffix}", str(uuid.uuid4())
        node.create_db(name, [{"_id": "0000-config", "uuid": config_uuid}])
        node.add_member(name, f"r{i}")
        recipients[config_uuid] = name
    admin = admin_client(replicas[0])
    for name in (alice, *recipients.values()):
        assert admin.post("/v1/databases", json={"database": name}).status_code == 201
    yield alice, recipients
    remove_broker_footprint(replicas[0].config["BROKER_SETTINGS"].state_db, node)
    for name in (alice, *recipients.values()):
        node.delete(name)


def through(node, state_db: str, mode: str = CONTINUOUS) -> Settings:
    """A broker's settings that reach the cluster through this node."""
    return Settings(
        couchdb_url=node.url,
        couchdb_user=node.admin[0],
        couchdb_password=node.admin[1],
        admin_tokens=(ADMIN_TOKEN,),
        state_db=state_db,
        replication_mode=mode,
        operation_grace_seconds=0,  # operations stopped half-way are reconciled at once
    )


def admin_client(app):
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN_TOKEN}"
    return client


def at_once(calls: list) -> list:
    """Run the calls in threads released together; return their results in order."""
    start = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i: int) -> None:
        start.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def assert_share_users(nodes: list, db: str, expected: set[str]) -> None:
    """On each node, exactly these share users come to be members of the database (by the
    role its `_security` names and their user docs hold) and carry a scope in it.

    A node answers from its own copy of the database, which CouchDB may update a few
    milliseconds after the write returned; a lost edit never comes.
    """
    with suppress(AssertionError):
        wait_for(
            lambda: all(share_users(node, db) == expected for node in nodes),
            f"{db}'s share users on every node",
            seconds=10,
        )
    for i, node in enumerate(nodes):
        assert share_users(node, db) == expected, f"node {i} of {len(nodes)}"


def share_users(node, db: str) -> set[str]:
    """The share users that are members of `db` and carry a scope in it, as `node` says."""
    scoped = set(scopes(node, db))
    return members(node, db) if members(node, db) == scoped else {"differs", *scoped}


@pytest.mark.parametrize("attempt", ROUNDS)
def test_identical_creates_through_two_replicas_make_one_share(cluster, replicas, people, attempt):
    """Those told yes were told of the same share; the others get 409. Reconcile settles
    what two writers of one share left, and a second pass finds nothing."""
    alice, recipients = people
    recipient = next(iter(recipients))
    body = {"owner": ALICE, "recipient": recipient, "access": "read", "collections": None}
    clients = [admin_client(replicas[i % 2]) for i in range(8)]

    answers = at_once([lambda c=c: c.post("/v1/shares", json=body) for c in clients])

    codes = Counter(a.status_code for a in answers)
    assert set(codes) <= {201, 409} and codes[201] >= 1, [a.json for a in answers]
    assert len({a.json["id"] for a in answers if a.status_code == 201}) == 1
    assert_settled(clients[1])
    listed = clients[1].get(f"/v1/shares?database={ALICE}").json["items"]
    assert [share["status"] for share in listed] == ["active"]
    labelled = {"sharing_broker.broker": replicas[0].config["BROKER_SETTINGS"].state_db}
    found = cluster.nodes[2].request("POST", "_replicator/_find", json={"selector": labelled})
    assert {doc["sharing_broker"]["share_id"] for doc in found.json()["docs"]} == {listed[0]["id"]}
    assert_share_users(cluster.nodes, alice, {f"sharing-broker-{listed[0]['id']}"})

    def running() -> bool:  # `_scheduler/docs` answers for the job wherever it runs
        share = clients[0].get(f"/v1/shares/{listed[0]['id']}").json
        return share["replications"][0]["replication_status"]["state"] == "running"

    wait_for(running, "the replication running, seen through either replica")


def assert_settled(client) -> None:
    """Reconcile until a pass repairs nothing; at most three passes. A node's copies catch
    up with the others' a moment later, so a sibling may show only after a pass."""
    passes = []
    for _ in range(3):
        report = client.post("/v1/reconcile").json
        assert report["errors"] == [], report
        passes.append(report["repaired"])
        if not report["repaired"]:
            return
    raise AssertionError(f"still repairing after three passes: {passes}")


@pytest.mark.parametrize("attempt", ROUNDS)
def test_concurrent_shares_of_one_owner_keep_its_access_exact(cluster, replicas, people, attempt):
    alice, recipients = people
    bodies = [
        {"owner": ALICE, "recipient": r, "access": "read-write", "collections": ["c0ll-uuid-1"]}
        for r in recipients
    ]
    clients = [admin_client(replicas[i % 2]) for i in range(len(bodies))]

    answers = at_once(
        [
            lambda c=c, b=b: c.post("/v1/shares", json=b)
            for c, b in zip(clients, bodies, strict=True)
        ]
    )

    assert [a.status_code for a in answers] == [201] * len(bodies), [a.json for a in answers]
    users = {f"sharing-broker-{a.json['id']}" for a in answers}
    assert_share_users(cluster.nodes, alice, users)  # every node answers the same
    by_recipient = {a.json["recipient"]: f"sharing-broker-{a.json['id']}" for a in answers}
    for config_uuid, db in recipients.items():
        assert_share_users(cluster.nodes[2:], db, {by_recipient[config_uuid]})
    guard = cluster.nodes[1].get(f"{alice}/_design/sharing-broker-guard")
    assert "scopes" not in guard["sharing_broker"]  # the fixed guard: no share edits it


@pytest.mark.parametrize("attempt", ROUNDS)
def test_a_lease_taken_twice_through_two_replicas_settles_on_one_holder(cluster, replicas, attempt):
    leases = [
        Lease(app.extensions["sharing_broker"].store.couch, _state(app), LEASE_ID, 30)
        for app in replicas
    ]
    for _ in range(20):
        taken = at_once([lease.take for lease in leases])
        assert taken.count(True) >= 1, taken
        wait_for(
            lambda: [lease.take() for lease in leases].count(True) == 1,
            "one holder of the lease",
            seconds=10,
        )
        for _ in range(3):  # and it stays one
            assert [lease.take() for lease in leases].count(True) == 1
        for lease in leases:
            lease.drop()


@pytest.mark.parametrize("attempt", ROUNDS)
def test_one_idempotency_key_through_two_replicas_runs_once(cluster, replicas, people, attempt):
    _alice, recipients = people
    body = {"owner": ALICE, "recipient": next(iter(recipients)), "access": "read"}
    key = {"Idempotency-Key": f"create-{attempt}"}
    clients = [admin_client(replicas[i % 2]) for i in range(8)]

    answers = at_once([lambda c=c: c.post("/v1/shares", json=body, headers=key) for c in clients])

    ran = [a for a in answers if a.status_code == 201 and "Idempotent-Replayed" not in a.headers]
    assert ran, [(a.status_code, a.json) for a in answers]
    for answer in answers:  # the others wait for one, get its answer again, or lose to it
        replayed = answer.headers.get("Idempotent-Replayed") == "true"
        detail = "" if answer.status_code == 201 else answer.json["detail"]
        assert answer in ran or replayed or "still running" in detail or ran[0].json["id"] in detail
        assert answer.status_code != 201 or answer.json["id"] == ran[0].json["id"]
    assert_settled(clients[0])
    listed = clients[1].get(f"/v1/shares?database={ALICE}").json["items"]
    assert [share["id"] for share in listed] == [ran[0].json["id"]]


@contextmanager
def following(app):
    """The app's followers loop in a thread, as `sharing-broker serve` runs it."""
    broker = app.extensions["sharing_broker"]
    stop = threading.Event()
    lease = Lease(broker.store.couch, broker.store.db, "test-followers-lease", 10)
    args = (0.5, broker.followers(), lease, broker.database_updates(), stop)
    loop = threading.Thread(target=follow_every, args=args, daemon=True)
    loop.start()
    try:
        yield
    finally:
        stop.set()
        loop.join(10)


def one_record(cluster, replicas, state_db: str, share_id: str) -> dict:
    """The share as both replicas read it, once the nodes agree on one branch of its
    record. A branch written through one node reaches the others a moment later, maybe
    after a reconcile pass judged without it: each poll runs a pass first."""
    found = []

    def agreed() -> dict | None:
        report = admin_client(replicas[0]).post("/v1/reconcile").json
        assert report["errors"] == [], report
        copies = [n.get(f"{state_db}/share:{share_id}", conflicts="true") for n in cluster.nodes]
        reads = [admin_client(r).get(f"/v1/shares/{share_id}").json for r in replicas]
        found[:] = [(c["_rev"], c.get("_conflicts")) for c in copies] + reads
        one = len({c["_rev"] for c in copies}) == 1 and not any("_conflicts" in c for c in copies)
        same = len({(r["collections"][0], r["status"], r["updated_at"]) for r in reads}) == 1
        return reads[0] if one and same else None

    try:
        return wait_for(agreed, f"one record of share {share_id} on every node and replica")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; found {found}") from None


def collections_at(node, db: str) -> set[str]:
    """The collections a database holds, by id."""
    rows = node.get(f"{db}/_all_docs", startkey='"collection-"', endkey='"collection-~"')["rows"]
    return {row["id"] for row in rows if "deleted" not in row["value"]}


@pytest.mark.parametrize("mode", [CONTINUOUS, ON_CHANGE])
@pytest.mark.parametrize("attempt", ROUNDS)
def test_two_changes_of_one_share_through_two_replicas_one_wins(
    cluster, replicas, state_db, people, mode, attempt
):
    """One is refused, or both are told yes and reconcile keeps one. In on-change mode the
    winner's scope is also what reaches the recipient, and the replicator docs keep one
    branch: runs write nothing into them."""
    _alice, recipients = people
    nodes = cluster.nodes
    recipient = next(iter(recipients))
    body = {"owner": ALICE, "recipient": recipient, "access": "read"}
    share = admin_client(replicas[0]).post("/v1/shares", json=body).json
    etag = admin_client(replicas[0]).get(f"/v1/shares/{share['id']}").headers["ETag"]
    changes = [["c0ll-uuid-1"], ["c0ll-uuid-2"]]

    answers = at_once(
        [
            lambda i=i: admin_client(replicas[i]).patch(
                f"/v1/shares/{share['id']}",
                json={"collections": changes[i]},
                headers={"If-Match": etag},
            )
            for i in range(2)
        ]
    )

    codes = sorted(a.status_code for a in answers)
    assert codes in ([200, 409], [200, 412], [200, 200]), [a.json for a in answers]
    if codes == [200, 200]:  # both told yes: reconcile keeps one, and brings all in line
        assert_settled(admin_client(replicas[0]))
    won = one_record(cluster, replicas, state_db, share["id"])
    assert won["collections"] in changes
    if mode == ON_CHANGE:
        nodes, wanted = cluster.nodes, {f"collection-{won['collections'][0]}"}
        seen = []

        def arrived() -> bool:
            seen.append([collections_at(n, recipients[recipient]) for n in nodes])
            return all(found == wanted for found in seen[-1])

        with following(replicas[1]):
            try:
                wait_for(arrived, f"{wanted}, and only it, at the recipient on every node")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; found {seen[-1]}") from None
    now = admin_client(replicas[1]).get(f"/v1/shares/{share['id']}").json
    assert now["collections"] == won["collections"]
    doc_id, lost = now["replications"][0]["id"], changes[1 - changes.index(won["collections"])]
    found = []

    def one_scope_everywhere() -> bool:  # the nodes' copies of `_replicator` sync in a while
        found[:] = [node.get(f"_replicator/{doc_id}", conflicts="true") for node in nodes]
        return all(
            won["collections"][0] in str(doc["selector"])
            and lost[0] not in str(doc["selector"])
            and "_conflicts" not in doc
            for doc in found
        )

    try:
        wait_for(one_scope_everywhere, "the winner's scope alone in _replicator on every node")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; found {[d['selector'] for d in found]}") from None


def test_on_change_mode_on_a_cluster_is_ready(cluster):
    node = cluster.nodes[0]
    state = f"broker_state_{uuid.uuid4().hex[:8]}"
    try:
        on_change = create_app(through(node, state, mode=ON_CHANGE))
        ensure_state_db(on_change)
        assert admin_client(on_change).get("/readyz").status_code == 200
    finally:
        node.delete(state)


def test_a_node_killed_in_a_create_leaves_one_whole_share(cluster, replicas, people, monkeypatch):
    """A node that holds copies of the state database (each does) dies as the share user is
    written, through a replica pointed at another node: the create goes on with the two
    left. The node comes back, and reconcile finds nothing to repair."""
    alice, recipients = people
    original = CouchClient._send
    killed = []

    def send(client, method, url, **kwargs):
        if not killed and method == "PUT" and "/_users/" in url:
            cluster.kill(0)
            killed.append(0)
        return original(client, method, url, **kwargs)

    monkeypatch.setattr(CouchClient, "_send", send)
    recipient = next(iter(recipients))
    body = {"owner": ALICE, "recipient": recipient, "access": "read-write", "collections": None}
    answer = admin_client(replicas[1]).post("/v1/shares", json=body)
    monkeypatch.setattr(CouchClient, "_send", original)
    assert killed and answer.status_code == 201, answer.json
    assert admin_client(replicas[1]).get("/readyz").status_code == 200  # while it is down
    cluster.revive(0)
    state = _state(replicas[0])
    wait_for(lambda: _readable(cluster.nodes[0], state), "the state database back on node 0")

    client = admin_client(replicas[1])
    assert_settled(client)
    shares = client.get(f"/v1/shares?database={ALICE}").json["items"]
    assert [share["status"] for share in shares] == ["active"]
    node = cluster.nodes[2]
    replications = node.request(
        "POST", "_replicator/_find", json={"selector": {"sharing_broker.broker": state}}
    ).json()["docs"]
    assert len(replications) == 2
    users = {f"sharing-broker-{shares[0]['id']}"}
    assert_share_users([node], alice, users)
    assert_share_users([node], recipients[recipient], users)


def test_with_a_node_down_a_share_lives_its_whole_life(cluster, replicas, people):
    """The node neither replica talks to is killed: create, change, rotate and revoke go on
    through both replicas, each answered at once, and `/readyz` stays 200."""
    alice, recipients = people
    clients = [admin_client(replica) for replica in replicas]
    recipient = next(iter(recipients))
    cluster.kill(2)
    try:
        assert all(client.get("/readyz").status_code == 200 for client in clients)
        body = {"owner": ALICE, "recipient": recipient, "access": "read-write"}
        created = clients[0].post("/v1/shares", json=body)
        assert created.status_code == 201, created.json
        path = f"/v1/shares/{created.json['id']}"
        etag = {"If-Match": clients[1].get(path).headers["ETag"]}
        changed = clients[1].patch(path, json={"collections": ["c0ll-uuid-1"]}, headers=etag)
        assert changed.status_code == 200, changed.json
        rotated = clients[0].post(f"{path}/rotate-credentials")
        assert rotated.status_code == 200, rotated.json
        users = {f"sharing-broker-{created.json['id']}"}
        assert_share_users(cluster.nodes[:2], alice, users)
        revoked = clients[1].delete(path)
        assert revoked.status_code == 200, revoked.json
        assert_share_users(cluster.nodes[:2], alice, set())
    finally:
        cluster.revive(2)
    wait_for(lambda: _readable(cluster.nodes[2], _state(replicas[0])), "node 2 back")
    assert_settled(clients[0])


def test_the_state_database_keeps_the_clusters_copies_and_is_ready(cluster, replicas):
    state = _state(replicas[0])
    assert cluster.nodes[0].get(state)["cluster"]["n"] == 3
    assert len(_shard_nodes(cluster.nodes[0], state)) == 3
    assert admin_client(replicas[1]).get("/readyz").status_code == 200


def test_a_state_database_of_one_copy_still_serves(cluster):
    """As earlier versions made it: it keeps working, without a move."""
    node = cluster.nodes[0]
    state = f"broker_state_{uuid.uuid4().hex[:8]}"
    node.put(f"{state}?q=1&n=1")
    try:
        response = admin_client(create_app(through(node, state))).get("/readyz")
        assert response.status_code == 200, response.json
    finally:
        node.delete(state)


def _state(app) -> str:
    return app.config["BROKER_SETTINGS"].state_db


def _shard_nodes(node, db: str) -> list[str]:
    """The nodes that hold a copy of the database's shards."""
    shards = node.get(f"{db}/_shards")["shards"]
    return sorted({n for copies in shards.values() for n in copies})


def _readable(node, db: str) -> bool:
    return node.request("GET", f"{db}/_all_docs", params={"limit": "1"}).ok


def test_reconcile_resolves_and_counts_conflicts_in_the_state_database(
    client, couch, settings, registered
):
    """A branch written past the revision check, as two nodes accepting the same write
    would leave it: reconcile keeps the revision every reader sees, drops the other, and
    /metrics counts it."""
    doc_id = f"database:{ALICE}"
    record = couch.get(f"{settings.state_db}/{doc_id}")
    losing = {**record, "_rev": "1-" + "0" * 32, "database": "someone-else"}
    couch.request(
        "POST", f"{settings.state_db}/_bulk_docs", json={"docs": [losing], "new_edits": False}
    ).raise_for_status()
    assert couch.get(f"{settings.state_db}/{doc_id}", conflicts="true")["_conflicts"]
    before = conflicts_counted(client)

    report = client.post("/v1/reconcile").json

    found = [f for f in report["repaired"] if f["kind"] == "state conflict"]
    assert [(f["doc_id"], f["dropped"]) for f in found] == [(doc_id, [losing["_rev"]])]
    assert couch.get(f"{settings.state_db}/{doc_id}", conflicts="true") == record
    assert conflicts_counted(client) == before + 1
    again = client.post("/v1/reconcile").json["found"]
    assert not [f for f in again if f["kind"] == "state conflict"]


def conflicts_counted(client) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    name = "sharing_broker_state_conflicts_total "
    return next((float(line.split()[1]) for line in text.splitlines() if line.startswith(name)), 0)


def test_the_feed_reads_the_same_through_either_replica(cluster, replicas, people):
    """Events written through both replicas, read whole through each, and page by page
    alternating between them from each other's cursors: nothing lost or twice.

    Each copy of the state database has its own order of `_changes`; a cursor names the
    copies it came from, and CouchDB reads on from them through whatever node."""
    _alice, recipients = people
    clients = [admin_client(replica) for replica in replicas]
    for i, recipient in enumerate(list(recipients)[:4]):
        body = {"owner": ALICE, "recipient": recipient, "access": "read", "auto_accept": False}
        share = clients[i % 2].post("/v1/shares", json=body).json
        assert clients[(i + 1) % 2].post(f"/v1/shares/{share['id']}/decline").status_code == 200

    def whole(client) -> list[str]:
        return [e["id"] for e in client.get("/v1/events?limit=200").json["items"]]

    wait_for(lambda: all(len(whole(c)) == 9 + 8 for c in clients), "17 events through each")
    assert set(whole(clients[0])) == set(whole(clients[1]))  # registrations, then shares
    read, since, turn = [], None, 0
    while True:
        query = "limit=3" + (f"&since={since}" if since else "")
        page = clients[turn % 2].get(f"/v1/events?{query}").json
        if not page["items"]:
            break
        read += [e["id"] for e in page["items"]]
        since, turn = page["next_since"], turn + 1
    assert sorted(read) == sorted(whole(clients[0]))
