"""Idempotency-Key, and concurrent identical requests making exactly one share."""

import base64
import json
from concurrent.futures import ThreadPoolExecutor

from service.couch import CouchUnavailable
from service.sharing.core.identity import Caller
from service.sharing.core.model import now_iso
from service.sharing.core.store import StateStore
from tests.conftest import ADMIN_TOKEN
from tests.helpers import replicator_docs
from tests.servers.demo import ALICE, BOB

BODY = {"owner": ALICE, "recipient": BOB, "access": "read", "collections": ["c0ll-uuid-1"]}


def post(client, body=BODY, key: str | None = None):
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/v1/shares", json=body, headers=headers)


def test_the_same_key_and_body_get_the_first_response(client, registered):
    first = post(client, key="create-1")
    again = post(client, key="create-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.get_json() == first.get_json()
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(client.get("/v1/shares").get_json()["items"]) == 1


def test_the_same_key_with_another_body_is_422(client, registered):
    post(client, key="create-2")
    response = post(client, {**BODY, "access": "read-write"}, key="create-2")
    assert response.status_code == 422
    assert "Idempotency-Key" in response.get_json()["errors"]


def test_a_refusal_is_replayed_too(client, registered):
    bad = {**BODY, "collections": ["no-such-collection"]}
    first, again = post(client, bad, key="bad-1"), post(client, bad, key="bad-1")
    assert first.status_code == again.status_code == 422
    assert again.get_json() == first.get_json()


def test_keys_belong_to_their_caller(app, client, registered, people):
    first = post(client, key="shared-key")
    token = base64.b64encode(":".join(people["alice"]).encode()).decode()
    alice = app.test_client()
    response = alice.post(
        "/v1/shares",
        json={**BODY, "recipient": BOB},
        headers={"Authorization": f"Basic {token}", "Idempotency-Key": "shared-key"},
    )
    assert response.status_code == 409  # a new request for Alice: the pair is taken
    assert first.status_code == 201


def test_delete_and_patch_take_keys(client, registered):
    share = post(client).get_json()
    etag = client.get(f"/v1/shares/{share['id']}").headers["ETag"]
    headers = {"If-Match": etag, "Idempotency-Key": "patch-1"}
    body = {"access": "read-write"}
    first = client.patch(f"/v1/shares/{share['id']}", json=body, headers=headers)
    again = client.patch(f"/v1/shares/{share['id']}", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    revoke = {"Idempotency-Key": "revoke-1"}
    assert client.delete(f"/v1/shares/{share['id']}", headers=revoke).status_code == 200
    replay = client.delete(f"/v1/shares/{share['id']}", headers=revoke)
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_a_malformed_key_is_400(client, registered):
    assert post(client, key="x" * 201).status_code == 400


def parallel(app, count: int, key: str | None) -> list[int]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    if key:
        headers["Idempotency-Key"] = key

    def create(_):
        return app.test_client().post("/v1/shares", json=BODY, headers=headers)

    with ThreadPoolExecutor(count) as pool:
        return [r.status_code for r in pool.map(create, range(count))]


def test_twenty_parallel_creates_make_one_share(app, client, couch, registered):
    statuses = parallel(app, 20, key=None)
    assert statuses.count(201) == 1
    assert set(statuses) == {201, 409}
    (share,) = client.get("/v1/shares").get_json()["items"]
    assert len(replicator_docs(couch, share["id"])) == 1


def test_twenty_parallel_creates_with_one_key_make_one_share(app, client, couch, registered):
    statuses = parallel(app, 20, key="burst-1")
    assert 201 in statuses and set(statuses) <= {201, 409}
    (share,) = client.get("/v1/shares").get_json()["items"]
    assert len(replicator_docs(couch, share["id"])) == 1


def test_the_same_json_in_another_key_order_is_the_same_request(client, registered):
    first = client.post(
        "/v1/shares",
        data=json.dumps(BODY),
        content_type="application/json",
        headers={"Idempotency-Key": "order-1"},
    )
    reordered = json.dumps(dict(reversed(list(BODY.items()))), indent=2)
    again = client.post(
        "/v1/shares",
        data=reordered,
        content_type="application/json",
        headers={"Idempotency-Key": "order-1"},
    )
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_user_of_another_server_never_shares_a_name_with_one_of_default():
    """`dana` of server `second` and `dana@second` of `default` are two callers: in the
    audit trail, and for their keys."""
    there, here = Caller("dana", server="second"), Caller("dana@second")
    assert there.actor == "user:second:dana"
    assert here.actor == "user:dana@second"
    assert there.scope != here.scope


def age(app, hours: float = 25) -> None:
    """Make every idempotency record look `hours` old, as if written then."""
    store = app.extensions["sharing_broker"].store
    rows = store.couch.get(store.db, "_all_docs", params={"include_docs": "true"})["rows"]
    for row in rows:
        if row["id"].startswith("idempotency:"):
            doc = {**row["doc"], "created_at": now_iso(-round(hours * 3600))}
            store.couch.put(store.db, row["id"], json=doc)


def test_a_key_expires_after_a_day_and_reconcile_removes_its_record(app, client, registered):
    post(client, key="old-key")
    age(app)
    again = post(client, {**BODY, "access": "read-write"}, key="old-key")
    assert again.status_code == 409  # a new request: not the 422 of a reused key
    assert "Idempotent-Replayed" not in again.headers
    age(app)
    report = client.post("/v1/reconcile").get_json()
    assert {"kind": "expired idempotency keys", "count": 1, "action": "removed them"} in report[
        "repaired"
    ]
    store = app.extensions["sharing_broker"].store
    rows = store.couch.get(store.db, "_all_docs")["rows"]
    assert [r["id"] for r in rows if r["id"].startswith("idempotency:")] == []


def restart(app, minutes: float) -> None:
    """Make every idempotency record look like a request started `minutes` ago and never
    answered, as one whose process died leaves it."""
    store = app.extensions["sharing_broker"].store
    rows = store.couch.get(store.db, "_all_docs", params={"include_docs": "true"})["rows"]
    for row in rows:
        if row["id"].startswith("idempotency:"):
            doc = {k: v for k, v in row["doc"].items() if k != "response"}
            doc.update(state="started", created_at=now_iso(-round(minutes * 60)))
            store.couch.put(store.db, row["id"], json=doc)


def test_a_key_left_started_by_a_request_that_died_is_free_after_ten_minutes(
    app, client, registered
):
    share = post(client, key="died-1").get_json()
    restart(app, minutes=5)
    waiting = post(client, key="died-1")
    assert waiting.status_code == 409
    assert "still running" in waiting.get_json()["detail"]
    restart(app, minutes=11)

    again = post(client, key="died-1")

    assert again.status_code == 409  # run anew: the pair is taken, by the first's share
    assert share["id"] in again.get_json()["detail"]
    assert post(client, key="died-1").get_json() == again.get_json()  # and kept for replay


def test_an_answer_the_state_database_will_not_keep_still_goes_out(
    app, client, registered, monkeypatch
):
    def unavailable(store, key_id, response):
        raise CouchUnavailable("PUT idempotency record", "timed out")

    monkeypatch.setattr(StateStore, "finish_key", unavailable)

    first = post(client, key="unkept-1")

    assert first.status_code == 201
    monkeypatch.undo()
    again = post(client, key="unkept-1")  # the key was let go: the request runs again
    assert again.status_code == 409
    assert first.get_json()["id"] in again.get_json()["detail"]
