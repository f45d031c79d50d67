"""Benchmarks: the broker's cost against the raw CouchDB floor, and how it grows.

    scripts/bench [--quick] [--results bench/RESULTS.md]

Starts its own pouchdb-server and the broker under gunicorn (the real serving path), and
prints a table. The floor is the same CouchDB writes made by hand, as the manual page does.
Targets are printed as PASS or FAIL beside the figures; they are never asserted in tests.
"""

import argparse
import datetime
import itertools
import math
import os
import platform
import shutil
import statistics
import subprocess
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from bench.counts import counting
from bench.floor import Floor
from bench.stack import ADMIN_TOKEN, Broker, collection_of, make_databases
from service.app import create_app
from service.config import Settings
from service.sharing.credentials import Credentials
from service.sharing.model import Access, Selection, Share, Status
from service.sharing.parts import O2R, R2O, Target, wanted_parts
from service.sharing.seal import Seal
from service.sharing.selectors import Scope
from tests.servers.pouchdb import PouchServer

STATE_DB = "bench_state"
SIZES = (100, 1_000, 10_000)
SEEDED_COLLECTIONS = ["c0ll-1"]  # seeded shares have no databases behind them


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def throughput(actions: list, clients: int) -> float:
    """Operations per second for `actions` run by `clients` concurrent clients."""
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda action: action(), actions))
    return len(actions) / (time.perf_counter() - start)


class Bench:
    def __init__(self, samples: int):
        self.samples = samples
        self.couch = PouchServer().start()
        self.dbs = make_databases(self.couch, 30)
        self.broker = Broker(self.couch, STATE_DB)
        for name, _ in self.dbs:
            self.broker.call("POST", "/v1/databases", json={"database": name})
        self.free_pairs = deque(itertools.permutations(self.dbs, 2))
        self.floor = Floor(self.couch.url, self.couch.admin)
        settings = Settings(
            couchdb_url=self.couch.url,
            couchdb_user=self.couch.admin[0],
            couchdb_password=self.couch.admin[1],
            admin_tokens=(ADMIN_TOKEN,),
            state_db=STATE_DB,
        )
        self.client = create_app(settings).test_client()
        self.client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN_TOKEN}"
        self.seal = Seal(settings.record_key)  # the served broker derives the same key
        self.seeded = 0

    # Broker operations over HTTP

    def create(self, pair, auto_accept: bool = True) -> tuple[str, tuple]:
        (_, owner), (_, recipient) = pair
        body = {
            "owner": owner,
            "recipient": recipient,
            "access": "read-write",
            "collections": [collection_of(owner)],
            "auto_accept": auto_accept,
        }
        return self.broker.call("POST", "/v1/shares", json=body).json()["id"], pair

    def revoke(self, created: tuple[str, tuple]) -> None:
        self.broker.call("DELETE", f"/v1/shares/{created[0]}")
        self.free_pairs.append(created[1])

    def accept(self, created: tuple[str, tuple]) -> None:
        self.broker.call("POST", f"/v1/shares/{created[0]}/accept")

    def get(self, share_id: str) -> None:
        self.broker.call("GET", f"/v1/shares/{share_id}")

    def list_page(self, cursor: str | None = None) -> str | None:
        params = {"with_status": "true", "limit": 50, "cursor": cursor}
        return self.broker.call("GET", "/v1/shares", params=params).json()["next_cursor"]

    def take_pairs(self, n: int) -> list:
        return [self.free_pairs.popleft() for _ in range(n)]

    # Measurements

    def latencies(self) -> dict[str, list[float]]:
        n = self.samples
        created = []
        found = {"create": [], "get": [], "list": [], "revoke": [], "accept": []}
        for pair in self.take_pairs(n):
            found["create"].append(timed(lambda p=pair: created.append(self.create(p))))
        for share_id, _ in created:
            found["get"].append(timed(lambda s=share_id: self.get(s)))
        for _ in range(n):
            found["list"].append(timed(self.list_page))
        for item in created:
            found["revoke"].append(timed(lambda c=item: self.revoke(c)))
        invites = [self.create(pair, auto_accept=False) for pair in self.take_pairs(n)]
        for item in invites:
            found["accept"].append(timed(lambda c=item: self.accept(c)))
        for item in invites:
            self.revoke(item)
        return found

    def throughputs(self, clients: int) -> dict[str, float]:
        n = self.samples
        pairs = self.take_pairs(n)
        created: list = []
        rates = {
            "create": throughput(
                [lambda p=p: created.append(self.create(p)) for p in pairs], clients
            )
        }
        ids = [share_id for share_id, _ in created]
        rates["get"] = throughput([lambda s=s: self.get(s) for s in ids], clients)
        rates["list"] = throughput([self.list_page] * n, clients)
        rates["revoke"] = throughput([lambda c=c: self.revoke(c) for c in created], clients)
        invites = [self.create(pair, auto_accept=False) for pair in self.take_pairs(n)]
        rates["accept"] = throughput([lambda c=c: self.accept(c) for c in invites], clients)
        for item in invites:
            self.revoke(item)
        return rates

    def floors(self) -> dict[str, list[float]]:
        n = self.samples
        pairs = self.take_pairs(n)
        keys = [uuid.uuid4().hex for _ in pairs]
        found = {"create": [], "get": [], "list": [], "revoke": []}
        for key, pair in zip(keys, pairs, strict=True):
            found["create"].append(timed(lambda k=key, p=pair: self.floor.create(k, *p)))
        for key in keys:
            found["get"].append(timed(lambda k=key: self.floor.status(k)))
        for _ in range(n):
            found["list"].append(timed(lambda: self.floor.list_status(keys[:50])))
        for key, pair in zip(keys, pairs, strict=True):
            found["revoke"].append(timed(lambda k=key, p=pair: self.floor.revoke(k, *p)))
        self.free_pairs.extend(pairs)
        found["accept"] = found["create"]  # accepting makes the same writes as creating
        return found

    def request_counts(self) -> dict[str, int]:
        """CouchDB requests per operation, counted in-process on the same server."""
        (_, owner), (_, recipient) = pair = self.free_pairs.popleft()
        body = {
            "owner": owner,
            "recipient": recipient,
            "access": "read-write",
            "collections": [collection_of(owner)],
        }
        counts = {}
        with counting() as sent:
            share_id = self.client.post("/v1/shares", json=body).get_json()["id"]
        counts["create"] = len(sent)
        for name, call in (
            ("get", lambda: self.client.get(f"/v1/shares/{share_id}")),
            ("list", lambda: self.client.get("/v1/shares?with_status=true&limit=50")),
            ("revoke", lambda: self.client.delete(f"/v1/shares/{share_id}")),
        ):
            with counting() as sent:
                call()
            counts[name] = len(sent)
        invite = self.client.post("/v1/shares", json={**body, "auto_accept": False}).get_json()
        with counting() as sent:
            self.client.post(f"/v1/shares/{invite['id']}/accept")
        counts["accept"] = len(sent)
        self.client.delete(f"/v1/shares/{invite['id']}")
        self.free_pairs.append(pair)
        return counts

    def seed(self, total: int) -> None:
        """Add active read-write shares, written directly, until the state holds `total`."""
        credentials = Credentials("sharing-broker-seeded", "not-a-live-share-user")
        while self.seeded < total:
            batch = min(1_000, total - self.seeded)
            states, replications = [], []
            for i in range(self.seeded, self.seeded + batch):
                owner, recipient = str(uuid.uuid4()), str(uuid.uuid4())
                share = Share.new(
                    owner, recipient, Access.READ_WRITE, Selection(SEEDED_COLLECTIONS)
                )
                share.status = Status.ACTIVE
                scope = Scope(SEEDED_COLLECTIONS)
                target = Target(Access.READ_WRITE, scope, f"seed-{i}-a", f"seed-{i}-b", scope)
                parts = wanted_parts(share, target, credentials, self.couch.url, STATE_DB)
                replications += [parts[O2R].body, parts[R2O].body]
                states += [
                    self.seal.signed(share.to_doc()),
                    {"_id": f"pair:{owner}--{recipient}", "type": "pair", "share_id": share.id},
                ]
            for db, docs in ((STATE_DB, states), ("_replicator", replications)):
                self.couch.request(
                    "POST", f"{db}/_bulk_docs", json={"docs": docs}
                ).raise_for_status()
            self.seeded += batch

    def growth(self) -> list[dict]:
        n = max(5, self.samples // 3)
        rows = []
        for size in SIZES:
            self.seed(size)
            row = {"size": size}
            pages, cursor = [], None
            for _ in range(n):
                start = time.perf_counter()
                cursor = self.list_page(cursor)
                pages.append((time.perf_counter() - start) * 1000)
            row["list"] = statistics.median(pages)
            with counting() as sent:
                self.client.get("/v1/shares?with_status=true&limit=50")
            row["list_requests"] = len(sent)
            created, creates, revokes = [], [], []
            for pair in self.take_pairs(n):
                creates.append(timed(lambda p=pair, out=created: out.append(self.create(p))))
            row["get"] = statistics.median(timed(lambda c=c: self.get(c[0])) for c in created)
            for item in created:
                revokes.append(timed(lambda c=item: self.revoke(c)))
            row["create"], row["revoke"] = statistics.median(creates), statistics.median(revokes)
            rows.append(row)
        cursor = self.list_page()
        while cursor:  # one worker or another has now served every share once
            cursor = self.list_page(cursor)
        rows[-1]["rss_mib"] = self.broker.worker_peak_rss_mib()
        return rows

    def stop(self) -> None:
        self.broker.stop()
        self.couch.stop()


OPERATIONS = ("create", "accept", "revoke", "get", "list")
LABELS = {"get": "get with status", "list": "list with status (page of 50)"}


def report(latency, floor, one, eight, counts, growth) -> str:
    lines = [
        "| operation | p50 ms | p95 ms | ops/s, 1 client | ops/s, 8 clients | CouchDB requests "
        "| floor p50 ms | broker / floor | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for op in OPERATIONS:
        p50, p95, floor_p50 = (
            statistics.median(latency[op]),
            percentile(latency[op], 95),
            statistics.median(floor[op]),
        )
        ratio = p50 / floor_p50
        target = ""
        if op in ("create", "accept", "revoke"):
            target = f"p50 ≤ 1.3x floor: {'PASS' if ratio <= 1.3 else 'FAIL'}"
        lines.append(
            f"| {LABELS.get(op, op)} | {p50:.1f} | {p95:.1f} | {one[op]:.0f} | {eight[op]:.0f} "
            f"| {counts[op]} | {floor_p50:.1f} | {ratio:.1f}x | {target} |"
        )
    lines += [
        "",
        "| shares | list page p50 ms | requests per page | get p50 ms | create p50 ms "
        "| revoke p50 ms | target |",
        "|---|---|---|---|---|---|---|",
    ]
    base = growth[0]["create"]
    for row in growth:
        checks = [f"≤ 3 requests/page: {'PASS' if row['list_requests'] <= 3 else 'FAIL'}"]
        if row["size"] == SIZES[-1]:
            ratio = row["create"] / base
            checks.append(
                f"create {ratio:.2f}x of 100 (≤ 1.2): {'PASS' if ratio <= 1.2 else 'FAIL'}"
            )
        lines.append(
            f"| {row['size']:,} | {row['list']:.1f} | {row['list_requests']} | {row['get']:.1f} "
            f"| {row['create']:.1f} | {row['revoke']:.1f} | {'; '.join(checks)} |"
        )
    lines += [
        "",
        f"Peak RSS of a gunicorn worker after serving {SIZES[-1]:,} shares: "
        f"{growth[-1]['rss_mib']:.0f} MiB",
    ]
    return "\n".join(lines)


def machine() -> str:
    node = subprocess.run(
        [shutil.which("node") or "node", "--version"], capture_output=True, text=True
    ).stdout.strip()
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"Node.js {node}, pouchdb-server 4.2.0 in memory, gunicorn 2 workers x 4 threads"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    parser.add_argument("--results", help="also write the report to this markdown file")
    args = parser.parse_args()
    bench = Bench(samples=15 if args.quick else 60)
    try:
        latency, floor = bench.latencies(), bench.floors()
        one, eight = bench.throughputs(1), bench.throughputs(8)
        counts = bench.request_counts()
        growth = bench.growth()
    finally:
        bench.stop()
    table = report(latency, floor, one, eight, counts, growth)
    print(table)
    if args.results:
        stamp = datetime.date.today().isoformat()
        with open(args.results, "w", encoding="utf-8") as out:
            out.write(
                f"# Benchmark results\n\n{stamp}, {machine()}, {bench.samples} samples per "
                f"figure.\n\n{table}\n"
            )


if __name__ == "__main__":
    main()
