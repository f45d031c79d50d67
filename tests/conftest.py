"""Fixtures: one CouchDB per test session, fresh databases and a broker app per test.

The server is Apache CouchDB when one can be had (see `tests/servers/choose.py`), else
pouchdb-server. Tests marked `couchdb` need what only Apache CouchDB does (replication,
`_scheduler`, `_db_updates`) and are skipped on the fallback; tests marked
`pouchdb_only` show how the broker copes with a server that lacks those.
"""

import os
import secrets
import signal
import threading
import uuid

import pytest
import responses

from service.app import create_app, ensure_state_db
from service.config import CONTINUOUS, Settings
from service.sharing.core.lease import Lease
from service.sharing.watching.followers import follow_every
from tests.helpers import CallLog, remove_broker_footprint
from tests.servers.broker import BrokerProcess
from tests.servers.choose import start_second_server, start_server
from tests.servers.cluster import LaunchedCluster
from tests.servers.demo import ALICE, BOB, alice_docs, bob_docs

ADMIN_TOKEN = "test-admin-token-" + secrets.token_hex(8)
SERVER = {}
MARKS = {
    "couchdb": "needs Apache CouchDB (replication, _scheduler, _db_updates)",
    "pouchdb_only": "shows how the broker copes with pouchdb-server's gaps",
    "fallback": "also runs in the pouchdb-server lane, so the fallback stays honest",
}


def pytest_configure(config):
    for name, meaning in MARKS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")


def pytest_sessionstart(session):
    # SIGTERM ends the run as Ctrl-C does, so the server started here is stopped too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    SERVER["couch"] = start_server()


def pytest_sessionfinish(session):
    if "couch" in SERVER:
        SERVER.pop("couch").stop()


def pytest_report_header(config):
    return f"CouchDB for the tests: {SERVER['couch'].describe()}"


def pytest_collection_modifyitems(config, items):
    kind = SERVER["couch"].kind
    skip = {
        "couchdb": pytest.mark.skip(reason=f"{MARKS['couchdb']}; this run has pouchdb-server"),
        "pouchdb_only": pytest.mark.skip(reason="runs on pouchdb-server only"),
    }
    for item in items:
        if kind != "couchdb" and "couchdb" in item.keywords:
            item.add_marker(skip["couchdb"])
        if kind != "pouchdb" and "pouchdb_only" in item.keywords:
            item.add_marker(skip["pouchdb_only"])


@pytest.fixture(scope="session")
def couch():
    return SERVER["couch"]


@pytest.fixture(scope="session")
def second_couch(couch):
    """A second Apache CouchDB, for shares across servers; started on first use."""
    if couch.kind != "couchdb":
        pytest.skip("shares across servers need Apache CouchDB twice")
    server = start_second_server()
    if server is None:
        missing = "no second CouchDB: set COUCHDB_SECOND_URL or COUCHDB_LAUNCHER"
        if os.environ.get("COUCHDB_SERVER") == "couchdb":  # CI: fail rather than skip
            raise RuntimeError(missing)
        pytest.skip(missing)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cluster(couch):
    """A three-node Apache CouchDB cluster from the launcher; started on first use."""
    launcher = os.environ.get("COUCHDB_LAUNCHER")
    if couch.kind != "couchdb" or not launcher:
        missing = "a cluster needs the launcher: set COUCHDB_LAUNCHER"
        if couch.kind == "couchdb" and os.environ.get("COUCHDB_SERVER") == "couchdb":
            raise RuntimeError(missing)  # CI: fail rather than skip
        pytest.skip(missing)
    started = LaunchedCluster(launcher).start()
    yield started
    started.stop()


@pytest.fixture
def names():
    """Unique database names for this test, so tests never see each other's data."""
    suffix = uuid.uuid4().hex[:8]
    return {"alice": f"inventory-alice-{suffix}", "bob": f"inventory-bob-{suffix}"}


@pytest.fixture
def dbs(couch, names, settings):
    """Alice's and Bob's databases, loaded from the reference fixture."""
    couch.create_db(names["alice"], alice_docs())
    couch.create_db(names["bob"], bob_docs())
    for person in ("alice", "bob"):  # members-only, as CouchDB 3 makes new databases
        couch.add_member(names[person], names[person])
    yield names
    remove_broker_footprint(settings.state_db, couch)  # replications stop first
    for name in names.values():
        couch.delete(name)


@pytest.fixture
def settings(couch):
    settings = Settings(
        couchdb_url=couch.url,
        couchdb_user=couch.admin[0],
        couchdb_password=couch.admin[1],
        admin_tokens=(ADMIN_TOKEN,),
        state_db=f"broker_state_{uuid.uuid4().hex[:8]}",
        # Continuous jobs replicate with no follower running; test_on_change runs the
        # default, on-change mode, with its followers loop.
        replication_mode=CONTINUOUS,
        # Tests stop operations half-way on purpose, then reconcile at once.
        operation_grace_seconds=0,
    )
    yield settings
    remove_broker_footprint(settings.state_db, couch)


@pytest.fixture
def app(settings):
    app = create_app(settings)
    ensure_state_db(app)
    yield app
    app.extensions["sharing_broker"].feed.stop()  # its follower reads no other test's calls


@pytest.fixture
def client(app):
    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN_TOKEN}"
    return test_client


@pytest.fixture
def registered(client, dbs):
    """Alice and Bob registered with the broker: their Configuration UUIDs."""
    for name in (dbs["alice"], dbs["bob"]):
        assert client.post("/v1/databases", json={"database": name}).status_code == 201
    return {"alice": ALICE, "bob": BOB}


@pytest.fixture
def faults(couch):
    """A `responses` mock that lets every request through to the server but the faults
    a test adds to it."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(couch.url)
        yield mock


@pytest.fixture
def calls(monkeypatch):
    """The requests the broker sends to CouchDB, in order."""
    return CallLog(monkeypatch)


CAROL = "c4a01000-3333-4c4c-8d8d-444455556666"


@pytest.fixture
def people(couch, dbs, registered, names):
    """Alice owns her database, Bob his, Carol hers; Dave can read none of them.

    Each has a CouchDB user with a fresh canary password, and is the only member listed
    in their database's `_security`.
    """
    suffix = names["alice"].rsplit("-", 1)[1]
    carol_db = names["carol"] = f"inventory-carol-{suffix}"
    couch.create_db(carol_db, [{"_id": "0000-config", "uuid": CAROL}])
    users = {}
    for person, db in [
        ("alice", dbs["alice"]),
        ("bob", dbs["bob"]),
        ("carol", carol_db),
        ("dave", None),
    ]:
        name, password = f"{person}-{suffix}", f"canary-{person}-{secrets.token_hex(8)}"
        if db:
            couch.add_member(db, name, password)
        else:
            user = {"name": name, "password": password, "roles": [], "type": "user"}
            couch.put(f"_users/org.couchdb.user:{name}", user)
        users[person] = (name, password)
    users["carol_db"] = carol_db
    yield users
    for person in ("alice", "bob", "carol", "dave"):
        couch.delete_doc("_users", f"org.couchdb.user:{users[person][0]}")


@pytest.fixture
def followers(app):
    """The followers loop in a thread, as `sharing-broker serve` runs it."""
    broker = app.extensions["sharing_broker"]
    stop = threading.Event()
    lease = Lease(broker.store.couch, broker.store.db, "test-followers-lease", 10)
    loop = threading.Thread(
        target=follow_every,
        args=(0.5, broker.followers(), lease, broker.database_updates(), stop),
        daemon=True,
    )
    loop.start()
    yield
    stop.set()
    loop.join(10)


@pytest.fixture
def live_broker(couch, settings, dbs, monkeypatch):
    """`sharing-broker serve` on a free port; the CLI pointed at it."""
    broker = BrokerProcess(couch, settings.state_db, f"cli:{ADMIN_TOKEN}")
    monkeypatch.setenv("BROKER_URL", broker.url)
    monkeypatch.setenv("BROKER_TOKEN", ADMIN_TOKEN)
    yield broker
    broker.stop()


def pytest_terminal_summary(terminalreporter):
    """Say how many failure points the fault-injection suite went through."""
    from tests.test_fault_injection import INJECTED

    if INJECTED["points"]:
        terminalreporter.write_line(
            f"fault injection: {INJECTED['points']} failure points injected, each reconciled"
        )
