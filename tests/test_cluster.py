"""The broker on a three-node Apache CouchDB cluster, with replicas pointed at different nodes.

On a cluster, "create this doc unless it exists" is a compare-and-set only where one copy
decides. The state database keeps one shard and one copy, so the broker's pair claims,
leases and idempotency records hold whatever node a request lands on. Access to the users'
databases needs no such thing: each share writes only its own user doc. The users'
databases keep the cluster's usual three copies. The concurrency tests run several rounds.
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
    _alice, recipients = people
    recipient = next(iter(recipients))
    body = {"owner": ALICE, "recipient": recipient, "access": "read", "collections": None}
    clients = [admin_client(replicas[i % 2]) for i in range(8)]

    answers = at_once([lambda c=c: c.post("/v1/shares", json=body) for c in clients])

    assert Counter(a.status_code for a in answers) == {201: 1, 409: 7}, [a.json for a in answers]
    listed = clients[1].get(f"/v1/shares?database={ALICE}").json["items"]
    assert [share["status"] for share in listed] == ["active"]
    labelled = {"sharing_broker.broker": replicas[0].config["BROKER_SETTINGS"].state_db}
    found = cluster.nodes[2].request("POST", "_replicator/_find", json={"selector": labelled})
    assert {doc["sharing_broker"]["share_id"] for doc in found.json()["docs"]} == {listed[0]["id"]}

    def running() -> bool:  # `_scheduler/docs` answers for the job wherever it runs
        share = clients[0].get(f"/v1/shares/{listed[0]['id']}").json
        return share["replications"][0]["replication_status"]["state"] == "running"

    wait_for(running, "the replication running, seen through either replica")


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
def test_two_replicas_never_both_hold_the_followers_lease(cluster, replicas, attempt):
    leases = [
        Lease(app.extensions["sharing_broker"].store.couch, _state(app), LEASE_ID, 30)
        for app in replicas
    ]
    for _ in range(40):
        taken = at_once([lease.take for lease in leases])
        assert taken.count(True) == 1, taken
        leases[taken.index(True)].drop()


@pytest.mark.parametrize("attempt", ROUNDS)
def test_one_idempotency_key_through_two_replicas_runs_once(cluster, replicas, people, attempt):
    _alice, recipients = people
    body = {"owner": ALICE, "recipient": next(iter(recipients)), "access": "read"}
    key = {"Idempotency-Key": f"create-{attempt}"}
    clients = [admin_client(replicas[i % 2]) for i in range(8)]

    answers = at_once([lambda c=c: c.post("/v1/shares", json=body, headers=key) for c in clients])

    ran = [a for a in answers if a.status_code == 201 and "Idempotent-Replayed" not in a.headers]
    assert len(ran) == 1, [(a.status_code, a.json) for a in answers]
    for answer in answers:  # the others wait for it, or get its answer again
        replayed = answer.headers.get("Idempotent-Replayed") == "true"
        assert answer is ran[0] or replayed or "still running" in answer.json["detail"]
        assert not replayed or answer.json["id"] == ran[0].json["id"]


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


def collections_at(node, db: str) -> set[str]:
    """The collections a database holds, by id."""
    rows = node.get(f"{db}/_all_docs", startkey='"collection-"', endkey='"collection-~"')["rows"]
    return {row["id"] for row in rows if "deleted" not in row["value"]}


@pytest.mark.parametrize("mode", [CONTINUOUS, ON_CHANGE])
@pytest.mark.parametrize("attempt", ROUNDS)
def test_two_changes_of_one_share_through_two_replicas_one_wins(
    cluster, replicas, people, mode, attempt
):
    """In on-change mode the winner's scope is also what reaches the recipient, and the
    replicator docs keep one branch: runs write nothing into them."""
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
    assert codes in ([200, 409], [200, 412]), [a.json for a in answers]
    won = next(a.json for a in answers if a.status_code == 200)
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
    doc_id = now["replications"][0]["id"]
    for node in cluster.nodes:
        doc = node.get(f"_replicator/{doc_id}", conflicts="true")
        assert won["collections"][0] in str(doc["selector"])
        assert changes[1 - changes.index(won["collections"])][0] not in str(doc["selector"])
        assert "_conflicts" not in doc


def test_on_change_mode_on_a_cluster_is_ready(cluster):
    node = cluster.nodes[0]
    state = f"broker_state_{uuid.uuid4().hex[:8]}"
    try:
        on_change = create_app(through(node, state, mode=ON_CHANGE))
        ensure_state_db(on_change)
        assert admin_client(on_change).get("/readyz").status_code == 200
    finally:
        node.delete(state)


def test_a_node_killed_in_a_create_leaves_one_whole_share_or_none(
    cluster, replicas, people, monkeypatch
):
    """The node that holds the state database dies as the share user is written, through
    a replica pointed at another node, and comes back; then reconcile runs."""
    alice, recipients = people
    state = _state(replicas[0])
    holder = cluster.node_of(_shard_nodes(cluster.nodes[0], state)[0])
    other = next(i for i in range(2) if i != holder)
    original = CouchClient._send
    killed = []

    def send(client, method, url, **kwargs):
        if not killed and method == "PUT" and "/_users/" in url:
            cluster.kill(holder)
            killed.append(holder)
        return original(client, method, url, **kwargs)

    monkeypatch.setattr(CouchClient, "_send", send)
    recipient = next(iter(recipients))
    body = {"owner": ALICE, "recipient": recipient, "access": "read-write", "collections": None}
    answer = admin_client(replicas[other]).post("/v1/shares", json=body)
    monkeypatch.setattr(CouchClient, "_send", original)
    cluster.revive(holder)
    wait_for(lambda: _readable(cluster.nodes[other], state), "the state database back")

    assert killed and answer.status_code in (201, 503), answer.json
    client = admin_client(replicas[other])
    report = client.post("/v1/reconcile").json
    assert report["errors"] == [], report
    shares = client.get(f"/v1/shares?database={ALICE}").json["items"]
    live = [s for s in shares if s["status"] in ("provisioning", "active", "revoking")]
    node = cluster.nodes[2]
    replications = node.request(
        "POST", "_replicator/_find", json={"selector": {"sharing_broker.broker": state}}
    ).json()["docs"]
    users = {f"sharing-broker-{share['id']}" for share in live}
    if live:  # whole: active, with both replications and the user in both databases
        assert [share["status"] for share in live] == ["active"]
        assert len(replications) == 2
    else:  # none: nothing left of it anywhere
        assert replications == []
    assert_share_users([node], alice, users)
    assert_share_users([node], recipients[recipient], users)
    # Settled: a pass finds nothing to repair. The copies of the node that came back catch
    # up meanwhile: one may show a sibling of a user's doc only after a pass, for the next.
    repaired = [client.post("/v1/reconcile").json["repaired"] for _ in range(2)]
    assert repaired[-1] == [], repaired


def test_the_state_database_keeps_one_copy_and_readiness_says_so(cluster, replicas):
    state = _state(replicas[0])
    assert cluster.nodes[0].get(state)["cluster"]["n"] == 1
    assert len(_shard_nodes(cluster.nodes[0], state)) == 1
    assert admin_client(replicas[1]).get("/readyz").status_code == 200


def test_a_state_database_with_three_copies_is_not_ready(cluster):
    node = cluster.nodes[0]
    state = f"broker_state_{uuid.uuid4().hex[:8]}"
    node.put(state)  # the cluster's default: three copies
    try:
        response = admin_client(create_app(through(node, state))).get("/readyz")
        assert response.status_code == 503
        assert "keeps 3 copies" in response.json["detail"]
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
    alternating between them from each other's cursors: one order, nothing lost or twice."""
    _alice, recipients = people
    clients = [admin_client(replica) for replica in replicas]
    for i, recipient in enumerate(list(recipients)[:4]):
        body = {"owner": ALICE, "recipient": recipient, "access": "read", "auto_accept": False}
        share = clients[i % 2].post("/v1/shares", json=body).json
        assert clients[(i + 1) % 2].post(f"/v1/shares/{share['id']}/decline").status_code == 200

    whole = [
        [e["id"] for e in client.get("/v1/events?limit=200").json["items"]] for client in clients
    ]
    assert whole[0] == whole[1] and len(whole[0]) == 9 + 8  # registrations, then shares
    read, since, turn = [], None, 0
    while True:
        query = "limit=3" + (f"&since={since}" if since else "")
        page = clients[turn % 2].get(f"/v1/events?{query}").json
        if not page["items"]:
            break
        read += [e["id"] for e in page["items"]]
        since, turn = page["next_since"], turn + 1
    assert read == whole[0]
