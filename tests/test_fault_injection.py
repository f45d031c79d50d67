"""Every CouchDB call of provision, accept, patch, revoke and rotate, made to fail in turn.

For each operation (create, accept, patch both ways and to rules, revoke, rotate), a clean
run counts its CouchDB calls. Then, for every call, a fresh world runs the operation with
that one call failing (a 5xx, a timeout or a dropped connection, taking turns from call to
call), and another with the process crashing right after it; then reconcile. The outcome must be one
of two: a share with every part present, or none of its parts left.
"""

import uuid
from contextlib import contextmanager

import pytest
import requests

from service.app import create_app, ensure_state_db
from service.config import Settings
from service.couch.client import CouchClient
from tests.conftest import ADMIN_TOKEN
from tests.consistency import DB_SHARING, assert_consistent
from tests.helpers import remove_broker_footprint, wait_for_docs
from tests.servers.demo import ALICE, BOB, alice_docs, bob_docs

INJECTED = {"points": 0}
RW = {"owner": ALICE, "recipient": BOB, "access": "read-write", "collections": ["c0ll-uuid-1"]}


class Crash(BaseException):
    """The process dies: nothing after this runs, no rollback, no error handler."""


def fake_500(*_args, **_kwargs) -> requests.Response:
    response = requests.Response()
    response.status_code = 500
    response._content = b'{"error": "internal_server_error", "reason": "injected"}'
    return response


def raise_(exc):
    def fault(*_args, **_kwargs):
        raise exc

    return fault


FAULTS = {
    "5xx": fake_500,
    "timeout": raise_(requests.ReadTimeout("injected")),
    "dropped": raise_(requests.ConnectionError("injected")),
}


class World:
    """Fresh databases, state database and broker app for one run."""

    def __init__(self, couch):
        self.couch = couch
        tag = uuid.uuid4().hex[:8]
        self.dbs = {"alice": f"fi-alice-{tag}", "bob": f"fi-bob-{tag}"}
        couch.create_db(self.dbs["alice"], alice_docs())
        couch.create_db(self.dbs["bob"], bob_docs())
        for name in self.dbs.values():
            couch.add_member(name, name)
        self.settings = Settings(
            couchdb_url=couch.url,
            couchdb_user=couch.admin[0],
            couchdb_password=couch.admin[1],
            admin_tokens=(ADMIN_TOKEN,),
            state_db=f"fi_state_{tag}",
            operation_grace_seconds=0,  # reconcile takes over the crashed operation at once
        )
        app = create_app(self.settings)
        ensure_state_db(app)
        self.broker = app.extensions["sharing_broker"]
        self.client = app.test_client()
        self.client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN_TOKEN}"
        for name in self.dbs.values():
            assert self.client.post("/v1/databases", json={"database": name}).status_code == 201

    def replicate(self) -> None:
        """Run each replication once, and return when the runs have ended, as the
        followers would in on-change mode (the default); none runs in the background, so
        the calls counted are the operation's alone."""
        b = self.broker
        b.on_change_runs(b.replications(), launch=lambda work: work()).run(None)

    def share(self, **fields) -> dict:
        response = self.client.post("/v1/shares", json={**RW, **fields})
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def etag(self, share_id: str) -> str:
        return self.client.get(f"/v1/shares/{share_id}").headers["ETag"]

    def remove(self) -> None:
        """Leave nothing running: replications, share users, databases."""
        remove_broker_footprint(self.settings.state_db, self.couch)
        for name in self.dbs.values():
            self.couch.delete(name)


def setup_create(world, couch):
    return None


def setup_invite(world, couch):
    return world.share(auto_accept=False)["id"]


def setup_read(world, couch):
    share_id = world.share(access="read")["id"]
    return share_id, world.etag(share_id)


def setup_read_write(world, couch):
    share_id = world.share()["id"]
    world.replicate()
    wait_for_docs(couch, world.dbs["bob"], {DB_SHARING}, "db_sharing at Bob's")
    return share_id, world.etag(share_id)


def patch(**change):
    def operation(world, subject):
        share_id, etag = subject
        headers = {"If-Match": etag}
        return world.client.patch(f"/v1/shares/{share_id}", json=change, headers=headers)

    return operation


CONTAINERS = [{"type": "item", "where": {"data.item_type": "container"}}]


SCENARIOS = {
    "create": (setup_create, lambda w, _: w.client.post("/v1/shares", json=RW)),
    "accept": (setup_invite, lambda w, s: w.client.post(f"/v1/shares/{s}/accept")),
    "patch to read-write": (setup_read, patch(access="read-write")),
    "patch to read": (setup_read_write, patch(access="read")),
    "patch rules": (setup_read_write, patch(rules=CONTAINERS)),
    "revoke with purge": (
        setup_read_write,
        lambda w, s: w.client.delete(f"/v1/shares/{s[0]}?purge=true"),
    ),
    "rotate credentials": (
        setup_read_write,
        lambda w, s: w.client.post(f"/v1/shares/{s[0]}/rotate-credentials"),
    ),
}


@contextmanager
def injected(fail_at: int | None, fault):
    """Count CouchDB calls; make call number `fail_at` fail with `fault`."""
    calls = {"n": 0}
    original = CouchClient._send

    def send(client, method, url, **kwargs):
        calls["n"] += 1
        if calls["n"] != fail_at:
            return original(client, method, url, **kwargs)
        if fault == "crash":
            original(client, method, url, **kwargs)
            raise Crash
        return FAULTS[fault](method, url, **kwargs)

    CouchClient._send = send
    try:
        yield calls
    finally:
        CouchClient._send = original


def run_once(couch, scenario: str, fail_at: int | None, fault: str | None) -> int:
    """One world, one operation with at most one failure, then reconcile; return the calls."""
    setup, operation = SCENARIOS[scenario]
    world = World(couch)
    try:
        subject = setup(world, couch)
        with injected(fail_at, fault) as calls:
            try:
                response = operation(world, subject)
                assert response.status_code < 500 or fail_at is not None, response.get_json()
            except Crash:
                pass
        report = world.client.post("/v1/reconcile").get_json()
        assert report["errors"] == [], report
        assert_consistent(couch, world.settings.state_db, world.dbs)
        return calls["n"]
    finally:
        world.remove()


@pytest.mark.couchdb  # revoke purges, and CouchDB's replicator runs each share for real
@pytest.mark.parametrize("mode", ["fault", "crash"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_call_can_fail_and_reconcile_restores_consistency(couch, scenario, mode):
    """`fault`: call i fails with a 5xx, a timeout or a dropped connection, in turn.
    `crash`: the process dies right after call i."""
    total = run_once(couch, scenario, None, None)
    assert total > 3
    kinds = list(FAULTS)
    for fail_at in range(1, total + 1):
        fault = "crash" if mode == "crash" else kinds[fail_at % len(kinds)]
        run_once(couch, scenario, fail_at, fault)
        INJECTED["points"] += 1
