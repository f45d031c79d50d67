"""The feed of share events, `GET /v1/events` (#28): what each party sees, in one order,
resumable, as pages, long polls and Server-Sent Events."""

import base64
import json
import threading
import time

import pytest

from tests.conftest import CAROL
from tests.helpers import scheduler_doc, wait_for
from tests.servers.demo import ALICE, BOB
from tests.test_squatting import claim, give_back

pytestmark = pytest.mark.fallback  # the state database's _changes: pouchdb-server has it


def as_user(app, people, who: str):
    name, password = people[who]
    client = app.test_client()
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Basic {token}"
    return client


def feed(client, **query) -> dict:
    response = client.get("/v1/events", query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def life_of_a_share(app, people) -> str:
    """Alice invites Bob, Bob accepts, Alice changes the share, Bob leaves; a refusal too."""
    alice, bob = as_user(app, people, "alice"), as_user(app, people, "bob")
    body = {"owner": ALICE, "recipient": BOB, "access": "read", "collections": ["c0ll-uuid-1"]}
    share = alice.post("/v1/shares", json=body).get_json()
    assert bob.post(f"/v1/shares/{share['id']}/accept").status_code == 200
    assert bob.post(f"/v1/shares/{share['id']}/accept").status_code == 409  # refused
    etag = alice.get(f"/v1/shares/{share['id']}").headers["ETag"]
    changed = alice.patch(
        f"/v1/shares/{share['id']}", json={"access": "read-write"}, headers={"If-Match": etag}
    )
    assert changed.status_code == 200
    assert bob.delete(f"/v1/shares/{share['id']}").status_code == 200
    return share["id"]


def test_each_party_reads_the_life_of_a_share_in_order(app, people, names):
    share_id = life_of_a_share(app, people)
    wanted = [
        ("invited", "owner"),
        ("accepted", "recipient"),
        ("changed", "owner"),
        ("left", "recipient"),
    ]
    for who, database in (("alice", ALICE), ("bob", BOB)):
        page = feed(as_user(app, people, who), database=database)
        assert [(e["kind"], e["role"]) for e in page["items"]] == wanted
        assert {e["share_id"] for e in page["items"]} == {share_id}
        text = json.dumps(page)
        assert names["alice"] not in text and names["bob"] not in text  # no database names
        assert people["alice"][0] not in text and people["bob"][0] not in text  # nor users


def test_an_owners_revoke_is_revoked(client, registered):
    body = {"owner": ALICE, "recipient": BOB, "access": "read", "collections": ["c0ll-uuid-1"]}
    share = client.post("/v1/shares", json={**body, "auto_accept": False}).get_json()
    assert client.delete(f"/v1/shares/{share['id']}").status_code == 200
    kinds = [(e["kind"], e["role"]) for e in feed(client, share=share["id"])["items"]]
    assert kinds == [("invited", "admin"), ("revoked", "admin")]


def test_the_feed_resumes_from_its_cursor_without_loss_or_repeat(app, client, people):
    life_of_a_share(app, people)
    everything = feed(client, database=ALICE)["items"]
    read, since = [], None
    while True:
        page = feed(client, database=ALICE, limit=1, **({"since": since} if since else {}))
        if not page["items"]:
            break
        read += page["items"]
        since = page["next_since"]
    assert [e["id"] for e in read] == [e["id"] for e in everything]
    middle = everything[1]["cursor"]
    after = feed(client, database=ALICE, since=middle)["items"]
    assert [e["id"] for e in after] == [e["id"] for e in everything[2:]]


def test_the_order_is_the_same_for_every_reader(app, client, people):
    life_of_a_share(app, people)
    mine = [e["id"] for e in feed(as_user(app, people, "alice"), database=ALICE)["items"]]
    theirs = [e["id"] for e in feed(as_user(app, people, "bob"), database=BOB)["items"]]
    admins = [e["id"] for e in feed(client)["items"]]
    assert mine == theirs == [i for i in admins if i in mine]


def test_strangers_and_users_without_a_database_read_nothing(app, people):
    life_of_a_share(app, people)
    carol = as_user(app, people, "carol")
    assert carol.get("/v1/events", query_string={"database": ALICE}).status_code == 404
    refused = carol.get("/v1/events")
    assert refused.status_code == 422 and "database" in refused.get_json()["errors"]
    by_share = carol.get("/v1/events", query_string={"database": CAROL, "share": "x"})
    assert by_share.status_code == 403


@pytest.mark.couchdb  # pouchdb-server reads any `since` it is given as 0
def test_a_bad_cursor_is_a_422_naming_since(client, registered):
    for cursor in ("%%%", base64.urlsafe_b64encode(b"not-a-seq").decode()):
        response = client.get("/v1/events", query_string={"since": cursor})
        assert response.status_code == 422, response.get_json()
        assert "since" in response.get_json()["errors"]


def test_a_long_poll_answers_when_an_event_arrives(app, client, registered):
    since = feed(client, since="now")["next_since"]
    answered = {}

    def wait():
        started = time.monotonic()
        query = {"feed": "longpoll", "timeout": 20_000, "since": since}
        answered["page"] = _admin_get(app, client, query)
        answered["seconds"] = time.monotonic() - started

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(1)
    body = {"owner": ALICE, "recipient": BOB, "access": "read", "auto_accept": False}
    share = client.post("/v1/shares", json=body).get_json()
    waiter.join(30)
    items = answered["page"]["items"]
    assert [(e["kind"], e["share_id"]) for e in items] == [("invited", share["id"])]
    assert answered["seconds"] < 15


def _admin_get(app, client, query: dict) -> dict:
    """As `client`, from another thread (a test client is not shared across threads)."""
    other = app.test_client()
    other.environ_base.update(client.environ_base)
    response = other.get("/v1/events", query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_long_poll_with_nothing_to_say_answers_empty_at_its_timeout(client, registered):
    started = time.monotonic()
    page = feed(client, since="now", feed="longpoll", timeout=1_000)
    assert page["items"] == [] and page["next_since"]
    assert time.monotonic() - started >= 1


def test_a_reader_back_from_its_timeout_costs_couchdb_no_page(client, registered, faults):
    """It comes back from where the follower stands: only the follower reads `_changes`
    until an event is for the reader, and then the reader gets it."""
    first = feed(client, since="now", feed="longpoll", timeout=1_000)
    before = len(faults.calls)
    again = feed(client, since=first["next_since"], feed="longpoll", timeout=1_000)
    assert again["items"] == []
    pages = [
        call.request.url
        for call in faults.calls[before:]
        if "/_changes" in call.request.url and "feed=longpoll" not in call.request.url
    ]
    assert pages == []
    body = {"owner": ALICE, "recipient": BOB, "access": "read", "auto_accept": False}
    share = client.post("/v1/shares", json=body).get_json()
    told = feed(client, since=again["next_since"], feed="longpoll", timeout=10_000)["items"]
    assert [(e["kind"], e["share_id"]) for e in told] == [("invited", share["id"])]


def test_past_its_waits_a_replica_answers_a_long_poll_at_once(app, client, registered):
    app.extensions["sharing_broker"].feed.max_waiting = 0
    started = time.monotonic()
    assert feed(client, since="now", feed="longpoll", timeout=10_000)["items"] == []
    assert time.monotonic() - started < 5
    stream = client.get("/v1/events", headers={"Accept": "text/event-stream"})
    assert stream.status_code == 503 and stream.headers["Retry-After"]


def test_an_event_stream_sends_each_event_and_resumes_after_the_last_id(client, registered):
    body = {"owner": ALICE, "recipient": BOB, "access": "read", "auto_accept": False}
    share = client.post("/v1/shares", json=body).get_json()
    client.post(f"/v1/shares/{share['id']}/decline")

    first = read_stream(client, {}, events=1, share=share["id"])
    assert first[0]["event"] == "invited"
    assert json.loads(first[0]["data"])["share_id"] == share["id"]
    resumed = read_stream(client, {"Last-Event-ID": first[0]["id"]}, events=1, share=share["id"])
    assert resumed[0]["event"] == "declined"


def read_stream(client, headers: dict, events: int, **query) -> list[dict]:
    """The first `events` events of a stream, each as its fields."""
    response = client.get(
        "/v1/events",
        headers={"Accept": "text/event-stream", **headers},
        query_string=query,
        buffered=False,
    )
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    found, text = [], ""
    for chunk in response.response:
        text += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in text:
            block, text = text.split("\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if "event" in fields:
                found.append(fields)
        if len(found) >= events:
            response.close()
            return found
    raise AssertionError("the stream ended first")


def test_a_long_poll_waits_no_longer_than_the_replica_allows(app, client, registered):
    app.extensions["sharing_broker"].feed.longest_wait = 1
    started = time.monotonic()
    assert feed(client, since="now", feed="longpoll", timeout=60_000)["items"] == []
    assert time.monotonic() - started < 10


def test_an_admins_share_is_accepted_at_once_and_a_purge_is_told(client, registered):
    body = {"owner": ALICE, "recipient": BOB, "access": "read", "collections": ["c0ll-uuid-1"]}
    share = client.post("/v1/shares", json=body).get_json()
    assert client.delete(f"/v1/shares/{share['id']}?purge=true").status_code == 200
    kinds = [(e["kind"], e["role"]) for e in feed(client, share=share["id"])["items"]]
    assert kinds == [
        ("invited", "admin"),
        ("accepted", "admin"),
        ("purged", "admin"),
        ("revoked", "admin"),
    ]


@pytest.mark.couchdb  # replications run on Apache CouchDB only
def test_a_replication_that_fails_and_recovers_is_told(app, client, couch, registered, people):
    """As the followers record the states: the feed tells both parties."""
    share = client.post(
        "/v1/shares",
        json={"owner": ALICE, "recipient": BOB, "access": "read", "collections": ["c0ll-uuid-1"]},
    ).get_json()
    recorder = app.extensions["sharing_broker"].state_recorder()
    recorder.every_seconds = 0
    doc = f"sharing-broker-{share['id']}-owner-to-recipient"
    user = f"_users/org.couchdb.user:sharing-broker-{share['id']}"
    assert couch.get(user)
    couch.delete_doc("_users", f"org.couchdb.user:sharing-broker-{share['id']}")
    wait_for(lambda: scheduler_doc(couch, doc).get("state") in ("crashing", "failed"), "a crash")
    recorder.run()
    assert client.post("/v1/reconcile").status_code == 200  # the user back, the job restarted
    wait_for(lambda: scheduler_doc(couch, doc).get("state") == "running", "running again")
    recorder.run()

    told = [e["kind"] for e in feed(as_user(app, people, "bob"), database=BOB)["items"]]
    assert told[-2:] == ["replication failing", "replication recovered"]


def test_admins_read_registrations_and_disputes_and_users_never_do(app, client, couch, people):
    """Registered, registration removed, disputed and dispute dismissed reach an admin's
    feed, about the Configuration UUID alone; a user's feed never has them, not even about
    their own database."""
    since = feed(client, since="now")["next_since"]
    assert client.post("/v1/databases", json={"database": people["carol_db"]}).status_code == 201
    claim(couch, client, people, ALICE)  # Carol's database now claims Alice's UUID
    give_back(couch, people)
    assert client.delete(f"/v1/databases/disputes/{ALICE}").status_code == 204

    told = feed(client, since=since)["items"]
    assert [(e["kind"], e["database"], e["role"]) for e in told] == [
        ("registered", CAROL, "admin"),
        ("registration removed", CAROL, "owner"),  # superseded by the claim
        ("disputed", ALICE, "owner"),
        ("dispute dismissed", ALICE, "admin"),
    ]
    assert all("share_id" not in e and "owner" not in e for e in told)
    assert people["carol_db"] not in json.dumps(told)
    about_alice = feed(client, since=since, database=ALICE)["items"]
    assert [e["kind"] for e in about_alice] == ["disputed", "dispute dismissed"]
    alices = feed(as_user(app, people, "alice"), database=ALICE)["items"]
    assert not {e["kind"] for e in alices} & {"registered", "disputed", "dispute dismissed"}
