"""Churn under node kills: the broker's state on a CouchDB cluster at the cluster's copies.

Two served brokers share one state database on the launcher's 3-node cluster, each
through its own node. A churn of shares (create, accept, PATCH, rotate, revoke) goes to
them in turn, while a killer SIGKILLs a random node at random moments and starts it again
a few seconds later. A request a broker cannot answer (503, or no answer) is retried on
the other. Then every node is up, reconcile runs until a pass repairs nothing, and the
state is checked against the issue's goals: no share record lost, no pair with two live
shares, each database's share users exactly its live shares', each user's scope its
share's, and a last reconcile that repairs nothing.

    python -m bench.churn --shares 100

Prints each figure beside its goal. Runs apart from CI: it takes a few minutes.
"""

import argparse
import os
import random
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import requests

from bench.stack import ADMIN_TOKEN, collection_of, config_uuid, inventory_docs
from service.sharing.placing.guard import scopes_in_roles
from tests.consistency import members, share_user_roles
from tests.servers.broker import BrokerProcess
from tests.servers.cluster import LaunchedCluster

STATE_DB = "sharing_broker_churn"
LIVE = ("pending", "provisioning", "active", "revoking")


class Churn:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.random = random.Random(args.seed)  # noqa: S311 (a bench's choices)
        self.cluster = LaunchedCluster(os.environ["COUCHDB_LAUNCHER"], 3).start()
        self.nodes = self.cluster.nodes
        self.brokers = [
            BrokerProcess(
                node,
                STATE_DB,
                ADMIN_TOKEN,
                BROKER_RECONCILE_INTERVAL="0",  # the bench runs reconcile itself, at the end
                # The replicator's way in, the same for both, as a load balancer's would be.
                BROKER_REPLICATION_URL=self.nodes[0].url,
            )
            for node in self.nodes[:2]
        ]
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        self.down: set[int] = set()
        self.kills: list[tuple[int, float]] = []  # (node, when)
        self.events: list[tuple[int, float, bool]] = []  # (broker, when, answered)
        self.waits: list[float] = []  # how long a request that failed somewhere waited
        self.outcomes: Counter = Counter()
        self.refused: list[str] = []  # answers other than success or 409, to look at
        self.repairs: Counter = Counter()  # reconcile's repairs, by kind
        self.created: dict[str, tuple[str, str]] = {}  # share id -> pair, as answered 201
        self.revoked: set[str] = set()  # answered 200 to DELETE
        self.stop = threading.Event()

    # The churn's requests

    def call(self, method: str, path: str, **kwargs) -> requests.Response | None:
        """The request through one broker, then the other while neither answers: up to
        `--patience` seconds."""
        turn = self.random.randrange(2)
        started = time.monotonic()
        failed = False
        while time.monotonic() < started + self.args.patience:
            broker = turn % 2
            try:
                url = self.brokers[broker].url + path
                response = self.http.request(method, url, timeout=30, **kwargs)
            except requests.RequestException:
                response = None
            answered = response is not None and response.status_code != 503
            self.events.append((broker, time.monotonic(), answered))
            if answered:
                if failed:
                    self.waits.append(time.monotonic() - started)
                self.outcomes[f"{method} {response.status_code}"] += 1
                if response.status_code >= 400 and response.status_code != 409:
                    self.refused.append(f"{method} {path}: {response.text[:200]}")
                return response
            failed = True
            turn += 1
            time.sleep(0.2)
        self.outcomes[f"{method} unanswered"] += 1
        return None

    def setup(self) -> list[str]:
        uuids = []
        for n in range(self.args.databases):
            name, uid = f"churn-{n:03d}", config_uuid(n)
            self.nodes[0].create_db(name, inventory_docs(uid))
            response = self.call("POST", "/v1/databases", json={"database": name})
            assert response is not None and response.status_code == 201, response
            uuids.append(uid)
        return uuids

    def churn(self, uuids: list[str]) -> None:
        """Steps until `--shares` shares were created: each creates a share of a random
        pair, or acts on the pair's live one."""
        live: dict[tuple[str, str], str] = {}
        steps = 0
        while len(self.created) < self.args.shares:
            steps += 1
            owner, recipient = self.random.sample(uuids, 2)
            share_id = live.get((owner, recipient))
            if share_id is None:
                body = {
                    "owner": owner,
                    "recipient": recipient,
                    "access": self.random.choice(["read", "read-write"]),
                    "collections": [collection_of(owner)],
                    "auto_accept": self.random.random() < 0.7,
                }
                answer = self.call("POST", "/v1/shares", json=body)
                if answer is None or answer.status_code != 201:
                    continue
                share_id = answer.json()["id"]
                self.created[share_id] = (owner, recipient)
                live[(owner, recipient)] = share_id
                if not body["auto_accept"]:
                    self.call("POST", f"/v1/shares/{share_id}/accept")
            path = f"/v1/shares/{share_id}"
            step = self.random.choice(["patch", "rotate", "revoke", "revoke", "keep"])
            if step == "patch":
                current = self.call("GET", path)
                if current is not None and current.status_code == 200:
                    etag = {"If-Match": current.headers["ETag"]}
                    self.call("PATCH", path, json={"collections": None}, headers=etag)
            elif step == "rotate":
                self.call("POST", f"{path}/rotate-credentials")
            elif step == "revoke":
                answer = self.call("DELETE", path)
                if answer is not None and answer.status_code == 200:
                    self.revoked.add(share_id)
                    live.pop((owner, recipient))
            print(f"\r{steps} steps, {len(self.created)} shares, {len(self.kills)} kills", end="")
        print()

    # The killer

    def kill_now_and_then(self) -> None:
        while not self.stop.wait(self.random.uniform(*self.args.every)):
            node = self.random.randrange(3)
            self.cluster.kill(node)
            self.kills.append((node, time.monotonic()))
            if self.stop.wait(self.random.uniform(*self.args.down)):
                self.cluster.revive(node)
                return
            self.cluster.revive(node)

    # The verdict

    def caught_up(self, seconds: float = 300) -> None:
        """Every node up, and done copying to the others what it missed while down."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            system = [n.get("_node/_local/_system") for n in self.nodes]
            if all(s.get("internal_replication_jobs", 0) == 0 for s in system):
                return
            time.sleep(1)
        print("internal replication still busy after", seconds, "s")

    def reconcile(self) -> list[int]:
        """Reconcile passes until one repairs nothing; the repairs of each."""
        repairs = []
        for _ in range(5):
            report = self.call("POST", "/v1/reconcile").json()
            repairs.append(len(report["repaired"]))
            self.repairs.update(repair["kind"] for repair in report["repaired"])
            if not report["repaired"] and not report["errors"]:
                break
        return repairs

    def shares(self) -> list[dict]:
        found, cursor = [], None
        while True:
            query = "limit=200" + (f"&cursor={cursor}" if cursor else "")
            page = self.call("GET", f"/v1/shares?{query}").json()
            found += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return found

    def verdict(self, repairs: list[int]) -> list[str]:
        shares = {share["id"]: share for share in self.shares()}
        lost = [i for i in self.created if i not in shares]
        live_again = [i for i in self.revoked if shares.get(i, {}).get("status") in LIVE]
        live = [s for s in shares.values() if s["status"] in LIVE]
        by_pair = Counter((s["owner"], s["recipient"]) for s in live)
        doubles = sum(1 for count in by_pair.values() if count > 1)
        node = self.nodes[2]
        names = {config_uuid(n): f"churn-{n:03d}" for n in range(self.args.databases)}
        wanted: dict[str, set[str]] = defaultdict(set)  # database -> its share users
        for share in shares.values():
            if share["status"] == "active":
                for party in (share["owner"], share["recipient"]):
                    wanted[names[party]].add(f"sharing-broker-{share['id']}")
        users_wrong = sum(len(members(node, db) ^ wanted[db]) for db in names.values())
        roles = share_user_roles(node)
        left = [name for name in roles if not any(name in w for w in wanted.values())]
        scopes_wrong = 0
        for share in (s for s in shares.values() if s["status"] == "active"):
            held = scopes_in_roles(roles.get(f"sharing-broker-{share['id']}", []))
            scoped = {names[share["owner"]], names[share["recipient"]]}
            recipients = held.get(names[share["recipient"]]) or {}
            wrong = set(held) != scoped or recipients.get("collections") != share["collections"]
            scopes_wrong += wrong
        longest = self.longest_silences()
        return [
            f"- cluster: the launcher's 3 nodes of Apache CouchDB 3.5.0; {len(self.created)}"
            f" shares created, {len(self.revoked)} revoked, with accepts, PATCHes and"
            f" rotations between; {len(self.kills)} SIGKILLs of a random node, each down"
            f" {self.args.down[0]:g}-{self.args.down[1]:g} s",
            f"- answers: {dict(sorted(self.outcomes.items()))}",
            f"- refused (besides 409): {self.refused[:5]}",
            f"- reconcile passes until one repaired nothing: repairs per pass {repairs}, by"
            f" kind {dict(self.repairs)}",
            f"- share records lost: {len(lost)} (goal 0); revoked shares live again:"
            f" {len(live_again)}",
            f"- pairs with two live shares: {doubles} (goal 0)",
            f"- share users missing from or left in a database: {users_wrong} (goal 0);"
            f" share users of no active share left on the server: {len(left)}",
            f"- active shares whose user's scope differs from the record: {scopes_wrong} (goal 0)",
            f"- longest a broker answered only 503 or nothing: {longest[0]:.1f} s; longest the"
            f" two together left a request unanswered: {longest[1]:.1f} s (goal ≤ 5 s)",
        ]

    def longest_silences(self) -> tuple[float, float]:
        """The longest one broker went from a first failure to its next answer, and the
        longest a request that failed somewhere waited for its answer from either."""
        one = 0.0
        for broker in range(2):
            since = None
            for _, when, answered in (e for e in self.events if e[0] == broker):
                if not answered and since is None:
                    since = when
                elif answered and since is not None:
                    one, since = max(one, when - since), None
        return one, max(self.waits, default=0.0)

    def close(self) -> None:
        for broker in self.brokers:
            broker.stop()
        self.cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shares", type=int, default=100, help="shares to create")
    parser.add_argument("--databases", type=int, default=12)
    parser.add_argument("--every", type=float, nargs=2, default=(3.0, 8.0), help="seconds up")
    parser.add_argument("--down", type=float, nargs=2, default=(2.0, 8.0), help="seconds down")
    parser.add_argument("--patience", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=29)
    parser.add_argument("--results", type=Path, help="append the figures to this file")
    args = parser.parse_args()
    churn = Churn(args)
    try:
        uuids = churn.setup()
        killer = threading.Thread(target=churn.kill_now_and_then, daemon=True)
        killer.start()
        churn.churn(uuids)
        churn.stop.set()
        killer.join(60)
        churn.caught_up()
        lines = churn.verdict(churn.reconcile())
        lines.append(f"- a last reconcile repaired: {churn.reconcile()[0]} (goal 0)")
    finally:
        churn.close()
    print("\n".join(lines))
    if args.results:
        with args.results.open("a") as out:
            out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
