"""What a share does to the app's devices, timed on Apache CouchDB.

A served broker (on-change mode, followers every 2 s) and Bob's phone, played by PouchDB 8
in Node as the app syncs (`tests/device.py`). Each round, on a fresh pair of databases:

- the floor: a start-up sync with nothing new, the least a device's next sync costs;
  every time is the app's own, from its login (Node's start is left out);
- a read-only share: the phone edits Alice's item and pushes it; the app stays open, and
  the time runs until the phone shows Alice's version again;
- a read-write share ended with purge: the revoke's answer, then the phone opened right
  after it, until it holds none of Alice's docs.

    .venv/bin/python -m bench.devices [--rounds N]
"""

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import requests

from bench.run import machine, percentile
from bench.stack import ADMIN_TOKEN, start_couchdb, stop_couchdb
from tests.device import Device
from tests.servers.broker import BrokerProcess
from tests.servers.demo import ALICE, BOB, alice_docs, bob_docs

ITEM = "item-it3m-uuid-1"
SHARED = ("collection-c0ll-uuid-1", ITEM)


class Round:
    """One pair of databases with their users, and Bob's phone."""

    def __init__(self, couch, broker: "Api", folder: Path, n: int):
        self.couch, self.broker = couch, broker
        self.alice, self.bob = f"devices-alice-{n:03d}", f"devices-bob-{n:03d}"
        couch.create_db(self.alice, alice_docs())
        couch.create_db(self.bob, bob_docs())
        for db in (self.alice, self.bob):
            couch.add_member(db, db, f"{db}-password")
            broker.call("POST", "/v1/databases", json={"database": db})
        user = (self.bob, f"{self.bob}-password")
        self.phone = Device(folder / self.bob, f"{couch.url}/{self.bob}", user)

    def share(self, access: str) -> str:
        body = {"owner": ALICE, "recipient": BOB, "access": access, "collections": ["c0ll-uuid-1"]}
        share_id = self.broker.call("POST", "/v1/shares", json=body).json()["id"]
        self.wait(lambda: all(self.live(doc_id) for doc_id in SHARED))
        return share_id

    def live(self, doc_id: str) -> bool:
        return self.couch.request("GET", f"{self.bob}/{doc_id}").ok

    @staticmethod
    def wait(check, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not check():
            if time.monotonic() > deadline:
                raise RuntimeError("the share's docs did not arrive")
            time.sleep(0.1)

    def undo(self) -> float:
        """Read-only: the phone's edit until the phone shows the owner's version, in ms."""
        share_id = self.share("read")
        self.phone.sync()
        self.phone.edit(ITEM, name="Bob's blender")
        answer = self.phone.live({"id": ITEM, "path": "data.name", "equals": "Blender"}, 60)
        if not answer["met"]:
            raise RuntimeError(f"the edit was not undone: {answer}")
        self.broker.call("DELETE", f"/v1/shares/{share_id}")
        return answer["elapsed_ms"]

    def end(self) -> float:
        """Read-write, ended with purge: the revoke's call until the phone is clean, in ms."""
        share_id = self.share("read-write")
        self.phone.sync()
        start = time.perf_counter()
        self.broker.call("DELETE", f"/v1/shares/{share_id}?purge=true")
        revoked = (time.perf_counter() - start) * 1000
        answer = self.phone.live({"id": ITEM, "gone": True}, 60)
        if not answer["met"]:
            raise RuntimeError(f"the phone kept the share: {answer}")
        return revoked + answer["elapsed_ms"]

    def forget(self) -> None:
        """Free the two Configuration UUIDs for the next round's databases."""
        for config_uuid in (ALICE, BOB):
            self.broker.call("DELETE", f"/v1/databases/{config_uuid}")

    def floor(self) -> float:
        return self.phone.sync()["elapsed_ms"]


class Api:
    def __init__(self, url: str):
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        response = self.session.request(method, self.url + path, timeout=60, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response


def line(what: str, values: list[float], floor: float) -> str:
    p50, p95 = statistics.median(values), percentile(values, 95)
    return f"| {what} | {p50:.0f} ms | {p95:.0f} ms | {p50 / floor:.1f}x |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--disposable", action="store_true", help="COUCHDB_URL may be filled")
    args = parser.parse_args()
    couch = start_couchdb(args.disposable)
    broker = BrokerProcess(
        couch, f"devices_state_{uuid.uuid4().hex[:8]}", ADMIN_TOKEN, BROKER_FOLLOW_INTERVAL="2"
    )
    figures: dict[str, list[float]] = {"floor": [], "undo": [], "end": []}
    described = machine(couch)
    try:
        with tempfile.TemporaryDirectory(prefix="devices-") as folder:
            for n in range(args.rounds):
                round_ = Round(couch, Api(broker.url), Path(folder), n)
                figures["undo"].append(round_.undo())
                figures["floor"].append(round_.floor())
                figures["end"].append(round_.end())
                round_.forget()
                print(f"round {n + 1}/{args.rounds} done", flush=True)
    finally:
        broker.stop()
        stop_couchdb(couch, [])
    floor = statistics.median(figures["floor"])
    print(f"\n{described}; PouchDB 8.0.1 as the older app; {args.rounds} rounds\n")
    print("| on Bob's phone | p50 | p95 | x the floor |\n|---|---|---|---|")
    print(line("floor: a start-up sync with nothing new", figures["floor"], floor))
    print(line("read-only: edit pushed, app open, until undone", figures["undo"], floor))
    print(line("end with purge: revoke called, until the phone is clean", figures["end"], floor))


if __name__ == "__main__":
    main()
