"""Users act for the databases they can read; a share waits for the recipient's consent."""

import base64
import logging
from dataclasses import replace
from datetime import datetime

import pytest

from service.app import create_app
from service.metrics import FAILED_LOGINS
from service.sharing.core.model import Event
from service.sharing.core.seal import Seal
from tests.conftest import ADMIN_TOKEN, CAROL
from tests.helpers import replicator_docs, revisions
from tests.servers.demo import ALICE, BOB

pytestmark = pytest.mark.fallback  # also run on pouchdb-server

INVITE = {"owner": ALICE, "recipient": BOB, "access": "read", "collections": ["c0ll-uuid-1"]}


def basic(name: str, password: str) -> dict:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def headers_for(people, who: str) -> dict:
    if who == "admin":
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    if who == "anonymous":
        return {}
    if who == "wrong password":
        return basic(people["alice"][0], "not-the-password")
    return basic(*people[who])


@pytest.fixture
def invitation(app, people):
    """A pending share from Alice to Bob, created by Alice herself."""
    response = app.test_client().post(
        "/v1/shares", json=INVITE, headers=headers_for(people, "alice")
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


CALLERS = ["admin", "alice", "bob", "carol", "anonymous", "wrong password", "dave"]
# Endpoint -> expected status for admin, owner (Alice), recipient (Bob), a third user
# (Carol), anonymous, a wrong password, and a user who can read none of the databases (Dave).
MATRIX = {
    ("POST", "/v1/databases", "alice-db"): [200, 200, 403, 403, 401, 401, 403],
    ("GET", "/v1/databases", None): [200, 403, 403, 403, 401, 401, 403],
    # A UUID the caller cannot act for is answered as an unknown one: 404.
    ("GET", f"/v1/databases/{ALICE}", None): [200, 200, 404, 404, 401, 401, 404],
    ("DELETE", f"/v1/databases/{ALICE}", None): [409, 409, 404, 404, 401, 401, 404],
    ("GET", f"/v1/shares?database={ALICE}", None): [200, 200, 404, 404, 401, 401, 404],
    ("GET", f"/v1/shares?database={BOB}", None): [200, 404, 200, 404, 401, 401, 404],
    ("GET", "/v1/shares", None): [200, 422, 422, 422, 401, 401, 422],
    ("POST", "/v1/shares", "alice-to-carol"): [201, 201, 404, 404, 401, 401, 404],
    ("POST", "/v1/shares", "again"): [409, 409, 404, 404, 401, 401, 404],
    ("GET", "/v1/shares/{id}", None): [200, 200, 200, 404, 401, 401, 404],
    ("PATCH", "/v1/shares/{id}", "patch"): [200, 200, 403, 404, 401, 401, 404],
    ("POST", "/v1/shares/{id}/accept", None): [200, 403, 200, 404, 401, 401, 404],
    ("POST", "/v1/shares/{id}/decline", None): [200, 403, 200, 404, 401, 401, 404],
    ("DELETE", "/v1/shares/{id}", None): [200, 200, 200, 404, 401, 401, 404],
    ("GET", "/v1/shares/{id}/events", None): [200, 200, 200, 404, 401, 401, 404],
    ("GET", "/v1/shares/{id}/preview", None): [200, 200, 403, 404, 401, 401, 404],
    ("PATCH", "/v1/shares/{id}?dry_run=true", "patch"): [200, 200, 403, 404, 401, 401, 404],
    ("POST", "/v1/shares?dry_run=true", "alice-to-carol"): [200, 200, 404, 404, 401, 401, 404],
}
CASES = [
    pytest.param(method, path, body, who, expected[i], id=f"{method} {path} {body or ''} as {who}")
    for (method, path, body), expected in MATRIX.items()
    for i, who in enumerate(CALLERS)
]


@pytest.mark.parametrize(("method", "path", "body", "who", "expected"), CASES)
def test_authorization_matrix(app, dbs, people, invitation, method, path, body, who, expected):
    client = app.test_client()
    headers = headers_for(people, who)
    share_path = path.replace("{id}", invitation["id"])
    if body == "patch":
        etag = client.get(share_path, headers=headers_for(people, "admin")).headers["ETag"]
        headers = {**headers, "If-Match": etag}
    payload = {
        "alice-db": {"database": dbs["alice"]},
        "alice-to-carol": {**INVITE, "recipient": CAROL},
        "again": INVITE,
        "patch": {"collections": ["c0ll-uuid-2"]},
    }.get(body)
    if body == "alice-to-carol":
        client.post(
            "/v1/databases",
            json={"database": people["carol_db"]},
            headers=headers_for(people, "admin"),
        )
    response = client.open(share_path, method=method, json=payload, headers=headers)
    assert response.status_code == expected, response.get_json()
    if expected >= 400:
        assert response.mimetype == "application/problem+json"


def test_nothing_is_written_before_acceptance_and_everything_after(app, couch, dbs, people):
    client = app.test_client()
    before = {db: revisions(couch, db) for db in dbs.values()}
    invite = client.post(
        "/v1/shares", json={**INVITE, "access": "read-write"}, headers=headers_for(people, "alice")
    ).get_json()
    assert invite["status"] == "pending"
    assert invite["expires_at"] > invite["created_at"]
    assert invite["replications"] == []
    assert replicator_docs(couch, invite["id"]) == {}
    assert {db: revisions(couch, db) for db in dbs.values()} == before

    accepted = client.post(f"/v1/shares/{invite['id']}/accept", headers=headers_for(people, "bob"))
    assert accepted.status_code == 200
    assert accepted.get_json()["status"] == "active"
    assert accepted.get_json()["expires_at"] is None
    assert len(replicator_docs(couch, invite["id"])) == 2
    assert f"db_sharing-{ALICE}--{BOB}" in couch.all_docs(dbs["alice"])


def test_decline_writes_nothing_and_frees_the_pair(app, couch, dbs, people, invitation):
    client = app.test_client()
    before = {db: revisions(couch, db) for db in dbs.values()}
    response = client.post(
        f"/v1/shares/{invitation['id']}/decline", headers=headers_for(people, "bob")
    )
    assert response.get_json()["status"] == "declined"
    assert {db: revisions(couch, db) for db in dbs.values()} == before
    again = client.post("/v1/shares", json=INVITE, headers=headers_for(people, "alice"))
    assert again.status_code == 201


def expire(couch, settings, share_id: str) -> None:
    """Move an invitation's expiry into the past, as time would."""
    path = f"{settings.state_db}/share:{share_id}"
    doc = {**couch.get(path), "expires_at": "2000-01-01T00:00:00Z"}
    couch.put(path, Seal(settings.record_key).signed(doc))  # as the broker would write it


def test_an_expired_invitation_cannot_be_accepted(app, couch, settings, people, invitation):
    client = app.test_client()
    expire(couch, settings, invitation["id"])
    bob = headers_for(people, "bob")
    shown = client.get(f"/v1/shares/{invitation['id']}", headers=bob).get_json()
    assert shown["status"] == "expired"
    listed = client.get(f"/v1/shares?database={BOB}&status=expired", headers=bob).get_json()
    assert [s["id"] for s in listed["items"]] == [invitation["id"]]
    pending = client.get(f"/v1/shares?database={BOB}&status=pending", headers=bob).get_json()
    assert pending["items"] == []
    response = client.post(f"/v1/shares/{invitation['id']}/accept", headers=bob)
    assert response.status_code == 409
    assert replicator_docs(couch, invitation["id"]) == {}
    actions = [
        e["action"]
        for e in client.get(f"/v1/shares/{invitation['id']}/events", headers=bob).get_json()[
            "items"
        ]
    ]
    assert actions == ["create", "expire", "accept"]
    assert (
        client.post("/v1/shares", json=INVITE, headers=headers_for(people, "alice")).status_code
        == 201
    )


def test_the_invitation_lifetime_is_configurable(couch, settings, people, dbs):
    app = create_app(replace(settings, invitation_ttl_seconds=60))
    share = (
        app.test_client()
        .post("/v1/shares", json=INVITE, headers=headers_for(people, "alice"))
        .get_json()
    )
    created, expires = (datetime.fromisoformat(share[k]) for k in ("created_at", "expires_at"))
    assert (expires - created).total_seconds() == 60


@pytest.mark.parametrize(
    ("steps", "then", "who"),
    [
        (["accept"], "accept", "bob"),
        (["accept"], "decline", "bob"),
        (["decline"], "accept", "bob"),
        (["decline"], "decline", "bob"),
        (["decline"], "revoke", "alice"),
        (["decline"], "patch", "alice"),
        (["revoke"], "accept", "bob"),
        (["revoke"], "patch", "alice"),
    ],
)
def test_transitions_outside_the_machine_are_409(app, people, invitation, steps, then, who):
    client = app.test_client()
    share_path = f"/v1/shares/{invitation['id']}"

    def do(action: str, actor: str):
        headers = headers_for(people, actor)
        if action == "revoke":
            return client.delete(share_path, headers=headers)
        if action == "patch":
            etag = client.get(share_path, headers=headers).headers["ETag"]
            return client.patch(
                share_path, json={"access": "read-write"}, headers={**headers, "If-Match": etag}
            )
        return client.post(f"{share_path}/{action}", headers=headers)

    for step in steps:
        assert do(step, "bob" if step != "revoke" else "alice").status_code == 200
    assert do(then, who).status_code == 409


def test_auto_accept_is_for_admins_only(app, people):
    client = app.test_client()
    body = {**INVITE, "auto_accept": True}
    response = client.post("/v1/shares", json=body, headers=headers_for(people, "alice"))
    assert response.status_code == 403
    assert "auto_accept" in response.get_json()["errors"]
    admin = headers_for(people, "admin")
    pending = client.post("/v1/shares", json={**INVITE, "auto_accept": False}, headers=admin)
    assert pending.get_json()["status"] == "pending"


def test_the_recipient_never_sees_the_owners_database(app, dbs, people, invitation):
    client = app.test_client()
    bob = headers_for(people, "bob")
    client.post(f"/v1/shares/{invitation['id']}/accept", headers=bob)
    seen = client.get(f"/v1/shares/{invitation['id']}", headers=bob).get_json()
    assert seen["owner"] == ALICE and seen["collections"] == ["c0ll-uuid-1"]
    (replication,) = seen["replications"]
    assert replication["source_database"] is None
    assert replication["target_database"] == dbs["bob"]
    listed = client.get(f"/v1/shares?database={BOB}", headers=bob).get_data(as_text=True)
    assert dbs["alice"] not in listed
    assert dbs["alice"] not in client.get(f"/v1/shares/{invitation['id']}", headers=bob).get_data(
        as_text=True
    )


def test_the_audit_trail_names_who_did_what(app, people, invitation):
    client = app.test_client()
    bob = headers_for(people, "bob")
    client.post(f"/v1/shares/{invitation['id']}/decline", headers=headers_for(people, "alice"))
    client.post(f"/v1/shares/{invitation['id']}/accept", headers=bob)
    client.delete(f"/v1/shares/{invitation['id']}", headers=bob)
    events = client.get(f"/v1/shares/{invitation['id']}/events", headers=bob).get_json()["items"]
    alice, bob_name = people["alice"][0], people["bob"][0]
    assert [(e["action"], e["actor"], e["outcome"]) for e in events] == [
        ("create", f"user:{alice}", "ok"),
        ("accept", f"user:{bob_name}", "ok"),
        ("revoke", f"user:{bob_name}", "ok"),
    ]
    assert all(e["at"].endswith("Z") for e in events)


def test_a_refused_transition_is_audited(app, people, invitation):
    client = app.test_client()
    bob = headers_for(people, "bob")
    client.post(f"/v1/shares/{invitation['id']}/decline", headers=bob)
    client.post(f"/v1/shares/{invitation['id']}/accept", headers=bob)
    events = client.get(f"/v1/shares/{invitation['id']}/events", headers=bob).get_json()["items"]
    assert events[-1]["action"] == "accept"
    assert events[-1]["outcome"].startswith("refused: ")


def test_admin_actions_are_audited_with_the_token_label(couch, settings, people):
    app = create_app(replace(settings, admin_tokens=(f"ops-robot:{ADMIN_TOKEN}",)))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    share = client.post("/v1/shares", json=INVITE, headers=headers).get_json()
    events = client.get(f"/v1/shares/{share['id']}/events", headers=headers).get_json()["items"]
    made = [(e["action"], e["actor"]) for e in events]
    assert made == [("create", "admin:ops-robot"), ("accept", "admin:ops-robot")]  # at once
    assert ADMIN_TOKEN not in str(events)


@pytest.mark.couchdb
def test_a_create_whose_record_is_refused_at_the_end_tells_no_ok(
    client, couch, settings, registered
):
    """The record and both outcomes are one write; a refused record takes both back."""
    refuse_active = (
        "function (doc) { if (doc.type === 'share' && doc.status === 'active') {"
        " throw({forbidden: 'not today'}); } }"
    )
    couch.put(f"{settings.state_db}/_design/refuse", {"validate_doc_update": refuse_active})
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    answer = client.post("/v1/shares", json=INVITE | {"auto_accept": True}, headers=headers)
    assert answer.status_code == 502, answer.get_json()
    (share,) = client.get("/v1/shares", headers=headers).get_json()["items"]
    events = client.get(f"/v1/shares/{share['id']}/events", headers=headers).get_json()["items"]
    assert [(e["action"], e["outcome"]) for e in events] == [("create", "failed: CouchDB error")]


def test_the_authsession_cookie_works_like_basic(app, couch, people):
    name, password = people["alice"]
    login = couch.request("POST", "_session", json={"name": name, "password": password})
    cookie = login.cookies["AuthSession"]
    client = app.test_client()
    client.set_cookie("AuthSession", cookie)
    response = client.get(f"/v1/shares?database={ALICE}")
    assert response.status_code == 200
    client.set_cookie("AuthSession", "forged-cookie")
    assert client.get(f"/v1/shares?database={ALICE}").status_code == 401


def test_a_failed_login_is_never_cached(app, couch, people, names):
    client = app.test_client()
    erin = f"erin-{names['alice']}"
    headers = basic(erin, "first-password-x")
    assert client.get("/v1/shares?database=" + ALICE, headers=headers).status_code == 401
    user = {"name": erin, "password": "first-password-x", "roles": [], "type": "user"}
    couch.put(f"_users/org.couchdb.user:{erin}", user)
    try:  # now she logs in, and may not act for Alice's database
        assert client.get("/v1/shares?database=" + ALICE, headers=headers).status_code == 404
    finally:
        couch.delete_doc("_users", f"org.couchdb.user:{erin}")


def test_repeated_failed_logins_for_one_name_get_429_and_only_that_name(app, people):
    """The app's backend calls for all its users from one address: one user's mistakes
    lock out that user's name there, and no one else."""
    client = app.test_client()
    wrong = headers_for(people, "wrong password")  # Alice's name
    statuses = [client.get("/v1/shares", headers=wrong).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    blocked = client.get(f"/v1/shares?database={ALICE}", headers=headers_for(people, "alice"))
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    bob = client.get(f"/v1/shares?database={BOB}", headers=headers_for(people, "bob"))
    assert bob.status_code == 200


def test_one_client_trying_many_names_meets_a_looser_bound(app, people):
    client = app.test_client()
    for n in range(50):
        assert client.get("/v1/shares", headers=basic(f"nobody-{n}", "x")).status_code == 401
    assert client.get("/v1/shares", headers=basic("nobody-50", "x")).status_code == 429
    bob = client.get(f"/v1/shares?database={BOB}", headers=headers_for(people, "bob"))
    assert bob.status_code == 429


def test_the_bounds_on_failed_logins_are_settings(settings, people):
    """`BROKER_FAILED_LOGINS_PER_NAME` and `_PER_CLIENT`, here 2 and 3."""
    bounds = replace(settings, failed_logins_per_name=2, failed_logins_per_client=3)
    client = create_app(bounds).test_client()
    wrong = [client.get("/v1/shares", headers=basic("nobody", "x")).status_code for _ in range(3)]
    assert wrong == [401, 401, 429]
    counted = {
        outcome: FAILED_LOGINS.labels(outcome)._value.get() for outcome in ("refused", "limited")
    }
    assert client.get("/v1/shares", headers=basic("nobody-else", "x")).status_code == 401
    assert client.get("/v1/shares", headers=basic("nobody-more", "x")).status_code == 429
    metrics = client.get("/metrics", headers=headers_for(people, "admin")).get_data(as_text=True)
    refused = f'sharing_broker_failed_logins_total{{outcome="refused"}} {counted["refused"] + 1}'
    limited = f'sharing_broker_failed_logins_total{{outcome="limited"}} {counted["limited"] + 1}'
    assert refused in metrics and limited in metrics


def forwarded_through(settings, allow: tuple[str, ...]):
    app = create_app(replace(settings, forwarded_allow_ips=allow))
    return app.test_client()


def test_with_any_proxy_trusted_only_the_last_hop_names_the_client(settings):
    """`*`: the peer is a proxy, but what came before its hop the client wrote itself.
    (A name that does not exist: CouchDB 3.4+ would lock a real one out.)"""
    client = forwarded_through(settings, ("*",))
    nobody = basic("nobody", "x")
    for n in range(5):  # the client varies the hops it writes; the proxy appends its own
        hops = {"X-Forwarded-For": f"192.0.2.{n}, 203.0.113.5"}
        assert client.get("/v1/shares", headers={**nobody, **hops}).status_code == 401
    hops = {"X-Forwarded-For": "203.0.113.5"}
    assert client.get("/v1/shares", headers={**nobody, **hops}).status_code == 429
    hops = {"X-Forwarded-For": "203.0.113.5, 203.0.113.9"}  # another client
    assert client.get("/v1/shares", headers={**nobody, **hops}).status_code == 401


def test_a_trusted_proxy_range_in_cidr_form_counts(settings):
    client = forwarded_through(settings, ("127.0.0.0/8",))  # the test client is 127.0.0.1
    nobody = basic("nobody", "x")
    for _ in range(5):
        hops = {"X-Forwarded-For": "203.0.113.5"}
        assert client.get("/v1/shares", headers={**nobody, **hops}).status_code == 401
    other = {**nobody, "X-Forwarded-For": "203.0.113.9"}
    assert client.get("/v1/shares", headers=other).status_code == 401
    again = {**nobody, "X-Forwarded-For": "203.0.113.5"}
    assert client.get("/v1/shares", headers=again).status_code == 429


def test_no_response_or_log_line_holds_a_password_or_cookie(app, couch, people, caplog):
    caplog.set_level(logging.DEBUG)
    name, password = people["alice"]
    cookie = couch.request("POST", "_session", json={"name": name, "password": password}).cookies[
        "AuthSession"
    ]
    client = app.test_client()
    texts = []
    alice = headers_for(people, "alice")
    invite = client.post("/v1/shares", json=INVITE, headers=alice)
    texts.append(invite)
    share_path = f"/v1/shares/{invite.get_json()['id']}"
    for person in ("alice", "bob", "carol", "dave", "wrong password"):
        headers = headers_for(people, person)
        texts += [
            client.get(share_path, headers=headers),
            client.post(f"{share_path}/accept", headers=headers),
            client.get(f"{share_path}/events", headers=headers),
            client.post("/v1/shares", json={"owner": "bad"}, headers=headers),
        ]
    cookie_client = app.test_client()
    cookie_client.set_cookie("AuthSession", cookie)
    texts.append(cookie_client.get(share_path))
    secrets = [people[p][1] for p in ("alice", "bob", "carol", "dave")] + [cookie]
    for response in texts:
        body = response.get_data(as_text=True) + str(dict(response.headers))
        assert not any(secret in body for secret in secrets)
    assert not any(secret in caplog.text for secret in secrets)


def test_the_limit_counts_each_client_behind_a_trusted_proxy(app, people):
    """Behind an ingress every request comes from the proxy's address; X-Forwarded-For
    names the client, and one client's failures lock out only that client."""
    client = app.test_client()  # from 127.0.0.1, the trusted proxy by default
    # Bob's password, not Alice's: CouchDB 3.4+ itself locks out a user after failed logins.
    wrong = {**basic(people["bob"][0], "not-the-password"), "X-Forwarded-For": "203.0.113.5"}
    statuses = [client.get("/v1/shares", headers=wrong).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    other = {**headers_for(people, "alice"), "X-Forwarded-For": "203.0.113.9"}
    assert client.get(f"/v1/shares?database={ALICE}", headers=other).status_code == 200


def test_an_untrusted_peer_cannot_pick_its_bucket(app, people):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "198.51.100.7"  # not a trusted proxy
    for n in range(5):
        spoofed = {**headers_for(people, "wrong password"), "X-Forwarded-For": f"192.0.2.{n}"}
        assert client.get("/v1/shares", headers=spoofed).status_code == 401
    assert client.get("/v1/shares", headers=headers_for(people, "alice")).status_code == 429


def test_a_valid_admin_token_is_never_refused_for_rate(app, people):
    client = app.test_client()
    for _ in range(6):
        client.get("/v1/shares", headers=headers_for(people, "wrong password"))
    assert client.get("/v1/shares", headers=headers_for(people, "admin")).status_code == 200


def test_a_request_without_credentials_is_no_failed_login(app, people):
    client = app.test_client()
    assert [client.get("/v1/shares").status_code for _ in range(10)] == [401] * 10
    assert (
        client.get(f"/v1/shares?database={ALICE}", headers=headers_for(people, "alice")).status_code
        == 200
    )


UNKNOWN = "00000000-0000-4000-8000-0000000000ff"


@pytest.mark.parametrize("disputed", [False, True], ids=["registered", "disputed"])
@pytest.mark.parametrize(
    "path",
    ["/v1/databases/{uuid}", "/v1/shares?database={uuid}"],
)
def test_a_uuid_the_caller_cannot_act_for_looks_unknown(app, people, path, disputed):
    """Registered to someone else (disputed or not), or not registered at all: the same
    answer, and no name."""
    if disputed:
        claim = Event("", "claim", "user:carol", "ok", database=ALICE)
        app.extensions["sharing_broker"].store.record_dispute(ALICE, people["carol_db"], claim)
    client = app.test_client()
    carol = headers_for(people, "carol")
    theirs = client.get(path.format(uuid=ALICE), headers=carol)
    unknown = client.get(path.format(uuid=UNKNOWN), headers=carol)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.get_data(as_text=True) == unknown.get_data(as_text=True).replace(UNKNOWN, ALICE)
    assert "inventory-alice" not in theirs.get_data(as_text=True)
    if path.startswith("/v1/databases/"):  # and it says it may be someone else's
        assert theirs.get_json()["detail"].endswith("or none that you may act for")


def bounded(settings, people, pending: int, live: int):
    """A broker with these bounds, with Carol's database registered too."""
    app = create_app(replace(settings, max_pending_invitations=pending, max_live_shares=live))
    client = app.test_client()
    carol = {"database": people["carol_db"]}
    response = client.post("/v1/databases", json=carol, headers=headers_for(people, "admin"))
    assert response.status_code == 201, response.get_json()
    return client


def test_a_users_pending_invitations_are_bounded(settings, people):
    client = bounded(settings, people, pending=1, live=10)
    alice = headers_for(people, "alice")
    assert client.post("/v1/shares", json=INVITE, headers=alice).status_code == 201
    to_carol = {**INVITE, "recipient": CAROL}
    refused = client.post("/v1/shares", json=to_carol, headers=alice)
    assert refused.status_code == 409
    assert "BROKER_MAX_PENDING_INVITATIONS" in refused.get_json()["detail"]
    assert refused.get_json()["errors"]["owner"]
    admin = headers_for(people, "admin")  # admins are not bounded
    assert (
        client.post(
            "/v1/shares", json={**to_carol, "auto_accept": False}, headers=admin
        ).status_code
        == 201
    )


def test_a_users_live_shares_are_bounded_when_inviting_and_accepting(settings, people):
    client = bounded(settings, people, pending=10, live=1)
    alice, bob = headers_for(people, "alice"), headers_for(people, "bob")
    invitation = client.post("/v1/shares", json=INVITE, headers=alice).get_json()
    refused = client.post("/v1/shares", json={**INVITE, "recipient": CAROL}, headers=alice)
    assert refused.status_code == 409
    assert "BROKER_MAX_LIVE_SHARES" in refused.get_json()["detail"]
    from_bob = {"owner": BOB, "recipient": CAROL, "access": "read", "collections": None}
    admin = headers_for(people, "admin")
    assert client.post("/v1/shares", json=from_bob, headers=admin).status_code == 201
    accepted = client.post(f"/v1/shares/{invitation['id']}/accept", headers=bob)
    assert accepted.status_code == 409  # Bob takes part in a live share already
    assert accepted.get_json()["errors"]["recipient"]


def test_registering_a_missing_database_tells_a_user_no_more_than_an_unreadable_one(
    app, people, dbs
):
    """404 would tell a user which databases exist; an admin is told."""
    client = app.test_client()
    missing = client.post(
        "/v1/databases", json={"database": "nope"}, headers=headers_for(people, "alice")
    )
    unreadable = client.post(
        "/v1/databases", json={"database": dbs["bob"]}, headers=headers_for(people, "alice")
    )
    assert missing.status_code == unreadable.status_code == 403
    assert "or it does not exist" in missing.get_json()["detail"]
    admin = client.post(
        "/v1/databases", json={"database": "nope"}, headers=headers_for(people, "admin")
    )
    assert admin.status_code == 404
