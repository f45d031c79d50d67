"""Webhooks (#28): the share events pushed to a backend, signed, at least once, paused
when an endpoint keeps failing."""

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from service.sharing.core.lease import Lease
from service.sharing.watching import webhooks as webhooks_module
from service.sharing.watching.webhooks import WebhookDelivery, deliver_every
from tests.conftest import ADMIN_TOKEN, CAROL
from tests.helpers import wait_for
from tests.servers.broker import BrokerProcess
from tests.servers.demo import ALICE, BOB

pytestmark = pytest.mark.fallback

INVITE = {"owner": ALICE, "recipient": BOB, "access": "read", "auto_accept": False}


class Receiver:
    """A backend's endpoint on a free port: what it received, and what it answers."""

    def __init__(self):
        self.received: list[tuple[dict, dict, bytes]] = []
        self.status = 204
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), json.loads(body), body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.close()


def verified(secret: str, headers: dict, body: bytes) -> bool:
    """The receiver's check, as Standard Webhooks describes it."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.{body.decode()}"
    expected = base64.b64encode(hmac.new(key, signed.encode(), hashlib.sha256).digest())
    return any(
        hmac.compare_digest(sig.removeprefix("v1,"), expected.decode())
        for sig in headers["webhook-signature"].split()
    )


def register(client, url: str, **fields) -> dict:
    response = client.post("/v1/webhooks", json={"url": url, **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def deliver(app) -> int:
    return WebhookDelivery(app.extensions["sharing_broker"].webhooks).run()


def test_an_endpoint_gets_each_event_once_signed(app, client, registered, names, receiver):
    hook = register(client, receiver.url)
    assert hook["secret"].startswith("whsec_")
    assert "secret" not in client.get(f"/v1/webhooks/{hook['id']}").get_json()
    share = client.post("/v1/shares", json=INVITE).get_json()
    client.post(f"/v1/shares/{share['id']}/decline")

    assert deliver(app) == 2
    assert deliver(app) == 0  # nothing twice

    kinds = [payload["data"]["kind"] for _, payload, _ in receiver.received]
    assert kinds == ["invited", "declined"]
    for headers, payload, body in receiver.received:
        headers = {k.lower(): v for k, v in headers.items()}
        assert verified(hook["secret"], headers, body)
        assert headers["webhook-id"] == payload["data"]["id"]
        assert payload["data"]["share_id"] == share["id"]
        text = body.decode()
        assert names["alice"] not in text and names["bob"] not in text
        assert hook["secret"] not in text
    assert client.get(f"/v1/webhooks/{hook['id']}").get_json()["last_delivered_at"]


def test_an_endpoint_gets_only_the_kinds_it_asked_for(app, client, registered, receiver):
    register(client, receiver.url, kinds=["declined"])
    share = client.post("/v1/shares", json=INVITE).get_json()
    client.post(f"/v1/shares/{share['id']}/decline")
    deliver(app)
    assert [p["type"] for _, p, _ in receiver.received] == ["share.declined"]


def test_an_endpoint_is_told_of_registrations(app, client, people, receiver):
    register(client, receiver.url, kinds=["registered", "registration removed"])
    assert client.post("/v1/databases", json={"database": people["carol_db"]}).status_code == 201
    assert client.delete(f"/v1/databases/{CAROL}").status_code == 204
    deliver(app)
    told = [(p["type"], p["data"]["database"]) for _, p, _ in receiver.received]
    assert told == [("database.registered", CAROL), ("database.registration_removed", CAROL)]
    assert people["carol_db"] not in b"".join(body for _, _, body in receiver.received).decode()


def test_an_endpoint_removed_while_a_delivery_records_its_place_is_removed(
    app, client, receiver, monkeypatch
):
    """The delivery pass writes the endpoint's record between the admin's read and delete:
    the removal reads it again, and is 204, not a CouchDB conflict."""
    hook = register(client, receiver.url)
    webhooks = app.extensions["sharing_broker"].webhooks
    read, raced = webhooks.get, []

    def read_then_a_delivery_writes(webhook_id):
        found = read(webhook_id)
        if not raced:
            raced.append(webhook_id)
            webhooks.save(read(webhook_id))
        return found

    monkeypatch.setattr(webhooks, "get", read_then_a_delivery_writes)
    assert client.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
    assert raced == [hook["id"]]
    assert client.get(f"/v1/webhooks/{hook['id']}").status_code == 404


def test_a_pass_goes_on_past_an_endpoint_removed_during_its_delivery(
    app, client, registered, receiver
):
    """One endpoint is removed while its events go out; the pass still serves the next."""
    first, second = register(client, receiver.url), register(client, receiver.url + "?b")
    client.post("/v1/shares", json=INVITE)
    webhooks = app.extensions["sharing_broker"].webhooks
    delivery = WebhookDelivery(webhooks)
    send = delivery._send
    removed = []

    def send_then_remove(webhook, entry):
        if webhook.id == first["id"] and not removed:
            removed.append(webhooks.remove(webhook.id))
        return send(webhook, entry)

    delivery._send = send_then_remove
    assert delivery.run() == 1  # the second's; the first's place could not be recorded
    assert len(receiver.received) == 2  # the first's event was on its way
    assert removed and [w.id for w in webhooks.all()] == [second["id"]]
    assert webhooks.get(second["id"]).last_delivered_at


def test_the_delivering_replica_sends_as_soon_as_an_event_arrives(
    app, client, registered, receiver
):
    """Its passes are a minute apart here: only the feed's follower waking it can send the
    event within 10 s."""
    register(client, receiver.url)
    broker = app.extensions["sharing_broker"]
    lease = Lease(broker.store.couch, broker.store.db, "webhooks-lease", 120)
    delivery, stop = WebhookDelivery(broker.webhooks), threading.Event()
    loop = threading.Thread(target=deliver_every, args=(60, delivery, lease, stop))
    loop.start()
    try:
        wait_for(lambda: delivery.endpoints, "the first pass", seconds=10)
        share = client.post("/v1/shares", json=INVITE).get_json()
        wait_for(lambda: receiver.received, "the delivery", seconds=10)
        assert receiver.received[0][1]["data"]["share_id"] == share["id"]
    finally:
        stop.set()
        broker.feed.stop()  # as a worker's shutdown does: the wait ends at once
        loop.join(10)
    assert not loop.is_alive()


def test_a_stopped_feed_leaves_the_delivery_loop_on_its_timer(app, client, receiver):
    """With the feed stopped before the loop's own stop, passes keep their interval
    rather than running back to back."""
    register(client, receiver.url)
    broker = app.extensions["sharing_broker"]
    lease = Lease(broker.store.couch, broker.store.db, "webhooks-lease", 120)
    delivery, stop, passes = WebhookDelivery(broker.webhooks), threading.Event(), []
    run = delivery.run
    delivery.run = lambda: passes.append(1) or run()
    broker.feed.stop()
    loop = threading.Thread(target=deliver_every, args=(60, delivery, lease, stop))
    loop.start()
    time.sleep(2)
    stop.set()
    loop.join(10)
    assert not loop.is_alive()
    assert len(passes) == 1


def test_an_endpoint_down_gets_everything_once_it_is_back(
    app, client, registered, receiver, monkeypatch
):
    monkeypatch.setattr(webhooks_module, "FIRST_RETRY_SECONDS", 0)
    hook = register(client, receiver.url)
    receiver.status = 503
    client.post("/v1/shares", json=INVITE)
    assert deliver(app) == 0
    stands = client.get(f"/v1/webhooks/{hook['id']}").get_json()
    assert (stands["state"], stands["failures"], stands["last_error"]) == (
        "active",
        1,
        "answered 503",
    )
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'sharing_broker_webhook_deliveries_total{outcome="refused"}' in metrics

    receiver.status = 200
    client.post("/v1/shares", json={**INVITE, "recipient": ALICE, "owner": BOB})
    assert deliver(app) == 2
    assert [p["data"]["kind"] for _, p, _ in receiver.received[-2:]] == ["invited", "invited"]
    assert client.get(f"/v1/webhooks/{hook['id']}").get_json()["failures"] == 0


def test_an_endpoint_that_keeps_failing_is_paused_until_resumed(
    app, client, registered, receiver, monkeypatch
):
    monkeypatch.setattr(webhooks_module, "FIRST_RETRY_SECONDS", 0)
    monkeypatch.setattr(webhooks_module, "LONGEST_RETRY_SECONDS", 0)
    hook = register(client, receiver.url)
    receiver.status = 500
    client.post("/v1/shares", json=INVITE)
    for _ in range(webhooks_module.MAX_FAILURES + 2):
        deliver(app)
    stands = client.get(f"/v1/webhooks/{hook['id']}").get_json()
    assert stands["state"] == "paused"
    assert len(receiver.received) == webhooks_module.MAX_FAILURES  # never retried forever
    assert "sharing_broker_webhooks_paused 1.0" in client.get("/metrics").get_data(as_text=True)

    receiver.status = 200
    assert client.post(f"/v1/webhooks/{hook['id']}/resume").get_json()["state"] == "active"
    assert deliver(app) == 1


def test_webhooks_are_for_admins_and_checked(app, client, people, registered):
    name, password = people["alice"]
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    user = app.test_client()
    user.environ_base["HTTP_AUTHORIZATION"] = f"Basic {token}"
    assert user.get("/v1/webhooks").status_code == 403
    assert user.post("/v1/webhooks", json={"url": "http://x.example/"}).status_code == 403
    bad = client.post("/v1/webhooks", json={"url": "ftp://x.example/", "kinds": ["nope"]})
    assert bad.status_code == 422 and {"url", "kinds.0"} <= set(bad.get_json()["errors"])
    assert client.get("/v1/webhooks/nope").status_code == 404
    hook = register(client, "http://x.example/hooks")
    assert client.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
    assert client.get(f"/v1/webhooks/{hook['id']}").status_code == 404


def test_a_served_broker_delivers_by_itself(couch, settings, registered, receiver):
    """gunicorn's workers run the delivery loop; one of them holds its lease."""
    served = BrokerProcess(couch, settings.state_db, ADMIN_TOKEN)
    try:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        hook = session.post(f"{served.url}/v1/webhooks", json={"url": receiver.url}, timeout=10)
        assert hook.status_code == 201
        share = session.post(f"{served.url}/v1/shares", json=INVITE, timeout=30).json()
        wait_for(lambda: receiver.received, "a delivery", seconds=20)
        assert [p["data"]["share_id"] for _, p, _ in receiver.received] == [share["id"]]
    finally:
        served.stop()
