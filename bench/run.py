"""Benchmarks: the broker's cost against the raw CouchDB floor, and how it grows.

    scripts/bench [--quick] [--results bench/RESULTS.md] [--disposable]

Starts its own Apache CouchDB (`COUCHDB_LAUNCHER`, or Docker) and the broker under
gunicorn with its followers on (the real serving path), and prints tables. The floor is the
same CouchDB writes made by hand, as the manual page does, timed in the same run. Targets
are printed as PASS or FAIL beside the figures; they are never asserted in tests.
"""

import argparse
import datetime
import itertools
import math
import os
import platform
import statistics
import time
import traceback
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from bench import e2e
from bench.counts import counting
from bench.fanout import broker_fan_out, floor_fan_out
from bench.floor import Floor
from bench.followers import FollowerPasses
from bench.progress import Progress
from bench.seeding import catch_up_indexes
from bench.stack import (
    ADMIN_TOKEN,
    Broker,
    collection_of,
    make_databases,
    report_arguments,
    start_couchdb,
    stop_couchdb,
)
from service.app import create_app
from service.config import CONTINUOUS, Settings
from service.sharing.core.model import Access, Selection, Share, Status
from service.sharing.core.seal import Seal
from service.sharing.core.store import pair_id
from service.sharing.crossing.selectors import Scope
from service.sharing.placing.credentials import Credentials
from service.sharing.placing.parts import O2R, R2O, Target, wanted_parts

STATE_DB = "bench_state"
SIZES = (100, 1_000, 10_000)
SEEDED_COLLECTIONS = ["c0ll-1"]  # seeded shares have no databases behind them
DATABASES = 40
TARGETS = {  # operation -> (most CouchDB requests, most times the floor's p50)
    "create": (16, 4.0),
    "accept": (16, 4.0),
    "revoke": (28, 3.0),
}
TOGETHER_TARGET = 1.5  # 8 concurrent creates for one owner: most times the floor's own 8


def settle(seconds: float = 3.0) -> None:
    """Let CouchDB finish what the last phase started (jobs, re-hashed passwords)."""
    time.sleep(seconds)


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


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


class Bench:
    def __init__(self, samples: int, disposable: bool, progress: Progress):
        self.samples = samples
        self.progress = progress
        self.couch = start_couchdb(disposable)
        self.dbs = make_databases(self.couch, DATABASES)
        self.broker = Broker(self.couch, STATE_DB)
        for name, _ in self.dbs:
            self.broker.call("POST", "/v1/databases", json={"database": name})
        # Owner 0 is kept for the concurrent creates; the others share among themselves.
        self.free_pairs = deque(itertools.permutations(self.dbs[1:], 2))
        self.floor = Floor(self.couch.url, self.couch.admin)
        self.settings = Settings(
            couchdb_url=self.couch.url,
            couchdb_user=self.couch.admin[0],
            couchdb_password=self.couch.admin[1],
            admin_tokens=(ADMIN_TOKEN,),
            state_db=STATE_DB,
            follow_interval_seconds=0,
            replication_mode=CONTINUOUS,  # as the served broker's: see stack.Broker
        )
        self.client = create_app(self.settings).test_client()
        self.client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN_TOKEN}"
        self.seal = Seal(self.settings.record_key)  # the served broker derives the same key
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
        """Broker and floor one after another, sample by sample, so both see the same
        server: its caches, its compactions, its replication jobs."""
        n = self.samples
        found = {op: [] for op in ("create", "get", "list", "revoke", "accept")}
        floor = {op: [] for op in ("create", "get", "list", "revoke")}
        created, floored = [], []
        for pair in self.take_pairs(n):
            found["create"].append(timed(lambda p=pair: created.append(self.create(p))))
            key, floor_pair = uuid.uuid4().hex, self.free_pairs.popleft()
            floor["create"].append(timed(lambda k=key, p=floor_pair: self.floor.create(k, *p)))
            floored.append((key, floor_pair))
        keys = [key for key, _ in floored]
        for (share_id, _), key in zip(created, keys, strict=True):
            found["get"].append(timed(lambda s=share_id: self.get(s)))
            floor["get"].append(timed(lambda k=key: self.floor.status(k)))
        for _ in range(n):
            found["list"].append(timed(self.list_page))
            floor["list"].append(timed(lambda: self.floor.list_status(keys[:50])))
        for item, (key, pair) in zip(created, floored, strict=True):
            found["revoke"].append(timed(lambda c=item: self.revoke(c)))
            floor["revoke"].append(timed(lambda k=key, p=pair: self.floor.revoke(k, *p)))
            self.free_pairs.append(pair)
        invites = [self.create(pair, auto_accept=False) for pair in self.take_pairs(n)]
        floor["accept"], floored = [], []
        for item in invites:  # accepting makes the same writes as creating: the floor's
            found["accept"].append(timed(lambda c=item: self.accept(c)))
            key, floor_pair = uuid.uuid4().hex, self.free_pairs.popleft()
            floor["accept"].append(timed(lambda k=key, p=floor_pair: self.floor.create(k, *p)))
            floored.append((key, floor_pair))
        for item in invites:
            self.revoke(item)
        for key, pair in floored:
            self.floor.revoke(key, *pair)
            self.free_pairs.append(pair)
        return {"broker": found, "floor": floor}

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

    def one_owner(self, clients: int = 8) -> dict[str, dict[str, float]]:
        """Creates for one owner database, alone then `clients` at once: p50 of each, for
        the broker and for the floor."""
        owner = self.dbs[0]
        batch = [(owner, other) for other in self.dbs[1 : clients + 1]]
        found = {side: {"lone": [], "together": []} for side in ("broker", "floor")}
        for _ in range(max(2, self.samples // clients)):
            for side, create, drop in (
                (
                    "broker",
                    self.create,
                    lambda made: self.broker.call("DELETE", f"/v1/shares/{made[0]}"),
                ),
                ("floor", self._floor_create, lambda made: self.floor.revoke(*made)),
            ):
                for pair in batch:
                    made = []
                    found[side]["lone"].append(
                        timed(lambda p=pair, out=made, c=create: out.append(c(p)))
                    )
                    drop(made[0])
                made = []
                actions = [lambda p=p, out=made, c=create: out.append(c(p)) for p in batch]
                with ThreadPoolExecutor(clients) as pool:
                    found[side]["together"] += pool.map(timed, actions)
                for item in made:
                    drop(item)
                settle()
        return {
            side: {k: statistics.median(v) for k, v in figures.items()}
            for side, figures in found.items()
        }

    def _floor_create(self, pair) -> tuple:
        key = uuid.uuid4().hex
        self.floor.create(key, *pair)
        return key, *pair

    def end_to_end(self) -> dict[str, dict[str, list[float]]]:
        """create -> first doc, owner write -> recipient, revoke -> last doc crossed."""
        found = {"broker": {}, "floor": {}}
        rounds = max(3, self.samples // 10)
        for side in found:
            first, write, tail = [], [], []
            for _ in range(rounds):
                pair = self.free_pairs.popleft()
                (owner_db, owner), (recipient_db, _) = pair
                if side == "broker":
                    created = []
                    start = lambda p=pair, out=created: out.append(self.create(p))  # noqa: E731
                    stop = lambda out=created: self.revoke(out[0])  # noqa: E731
                else:
                    name = uuid.uuid4().hex
                    start = lambda k=name, p=pair: self.floor.create(k, *p)  # noqa: E731
                    stop = lambda k=name, p=pair: self.floor.revoke(k, *p)  # noqa: E731
                key = f"{side}-{uuid.uuid4().hex[:8]}"
                first.append(e2e.first_doc_ms(self.couch, start, pair, f"{key}-first"))
                write.append(
                    e2e.write_crosses_ms(self.couch, owner_db, recipient_db, owner, f"{key}-write")
                )
                tail.append(e2e.revoke_tail_ms(self.couch, pair, stop, f"{key}-tail"))
                if side == "floor":
                    self.free_pairs.append(pair)
            found[side] = {"first": first, "write": write, "tail": tail}
        return found

    def fan_out(self, count: int) -> dict:
        """One owner write reaching `count` recipients: guarded at two JavaScript process
        limits, and the floor's."""
        found = {"broker": broker_fan_out(self.couch, self.broker, self.dbs[0], count, [100, 400])}
        found["floor"] = floor_fan_out(self.couch, self.dbs[0], count)
        found["count"] = count
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
        """Add active read-write shares, written directly, until the state holds `total`.

        Their replicator docs are marked `completed`, which CouchDB's replicator leaves
        alone: no job starts for them, as none could for databases that do not exist.
        """
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
                parts = wanted_parts(
                    share, target, credentials, {"default": self.couch.url}, STATE_DB
                )
                replications += [
                    {**parts[name].body, "_replication_state": "completed"} for name in (O2R, R2O)
                ]
                states += [
                    self.seal.signed(share.to_doc()),
                    {"_id": pair_id(owner, recipient), "type": "pair", "share_id": share.id},
                ]
            for db, docs in ((STATE_DB, states), ("_replicator", replications)):
                response = self.couch.request("POST", f"{db}/_bulk_docs", json={"docs": docs})
                response.raise_for_status()
            self.seeded += batch
            self.progress.count(self.seeded, total, "shares seeded")

    def growth(self) -> list[dict]:
        n = max(5, self.samples // 3)
        passes = FollowerPasses(self.settings)
        passes.one()  # the first pass reads every feed from its start
        rows = []
        for size in SIZES:
            self.progress.detail(f"{size:,} shares")
            self.seed(size)
            row = {"size": size, "catch_up": catch_up_indexes(self.couch, STATE_DB)}
            passes.one()  # the seeded replicator docs, read once
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
            row["after_create"] = passes.one()  # two replicator docs per share changed
            for item in created:
                revokes.append(timed(lambda c=item: self.revoke(c)))
            row["create"], row["revoke"] = statistics.median(creates), statistics.median(revokes)
            settle()
            idle = []
            for _ in range(5):  # as the followers run them: one every 2 s
                idle.append(passes.one())
                time.sleep(2)
            row["idle_requests"] = max(count for count, _ in idle)
            row["idle_ms"] = statistics.median(ms for _, ms in idle)
            rows.append(row)
        cursor = self.list_page()
        while cursor:  # one worker or another has now served every share once
            cursor = self.list_page(cursor)
        time.sleep(6)  # a few passes of the served followers over 10,000 shares
        rows[-1]["rss_mib"] = self.broker.worker_peak_rss_mib()
        return rows

    def stop(self) -> None:
        self.broker.stop()
        fanned = [db for db in self.couch.get("_all_dbs") if db.startswith("bench-fan-")]
        stop_couchdb(self.couch, [STATE_DB, *(name for name, _ in self.dbs), *fanned])


OPERATIONS = ("create", "accept", "revoke", "get", "list")
LABELS = {"get": "get with status", "list": "list with status (page of 50)"}


def operations_table(latency, one, eight, counts) -> list[str]:
    broker, floor = latency["broker"], latency["floor"]
    lines = [
        "| operation | p50 ms | p95 ms | ops/s, 1 client | ops/s, 8 clients | CouchDB requests "
        "| floor p50 ms | broker / floor | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for op in OPERATIONS:
        p50, p95 = statistics.median(broker[op]), percentile(broker[op], 95)
        floor_p50 = statistics.median(floor[op])
        ratio = p50 / floor_p50
        target = ""
        if op in TARGETS:
            most, times = TARGETS[op]
            ok = ratio <= times and counts[op] <= most
            target = f"≤ {most} requests, ≤ {times:g}x floor: {verdict(ok)}"
        lines.append(
            f"| {LABELS.get(op, op)} | {p50:.1f} | {p95:.1f} | {one[op]:.0f} | {eight[op]:.0f} "
            f"| {counts[op]} | {floor_p50:.1f} | {ratio:.1f}x | {target} |"
        )
    return lines


def concurrency_lines(owner) -> list[str]:
    broker, floor = owner["broker"], owner["floor"]
    ratio = broker["together"] / broker["lone"]
    floor_ratio = floor["together"] / floor["lone"]
    against_floor = broker["together"] / floor["together"]
    return [
        "",
        f"8 concurrent creates for one owner database: p50 {broker['together']:.1f} ms against"
        f" {broker['lone']:.1f} ms alone, {ratio:.2f}x. The floor's: {floor['together']:.1f}"
        f" ms against {floor['lone']:.1f} ms, {floor_ratio:.2f}x. The broker's 8 against the"
        f" floor's 8: {against_floor:.2f}x (≤ {TOGETHER_TARGET:g}x:"
        f" {verdict(against_floor <= TOGETHER_TARGET)}).",
    ]


def end_to_end_lines(found) -> list[str]:
    lines = [
        "",
        "| end to end | broker p50 ms | floor p50 ms | broker / floor | target |",
        "|---|---|---|---|---|",
    ]
    for key, label, limit in (
        ("first", "create → first doc at the recipient", 1.1),
        ("write", "owner write → recipient, steady state", None),
        ("tail", "revoke → last doc that still crossed", None),
    ):
        broker = statistics.median(found["broker"][key])
        floor = statistics.median(found["floor"][key])
        ratio = f"{broker / floor:.2f}x" if floor else "n/a"
        target = f"≤ {limit}x floor: {verdict(broker <= limit * floor)}" if limit else ""
        lines.append(f"| {label} | {broker:.0f} | {floor:.0f} | {ratio} | {target} |")
    return lines


def fan_out_lines(found) -> list[str]:
    lines = [
        "",
        f"| one owner write → {found['count']} recipients | median ms | last ms |",
        "|---|---|---|",
    ]
    rows = [(f"guarded, os_process_limit {k}", v) for k, v in found["broker"].items()]
    for label, row in [*rows, ("floor: no guard", found["floor"])]:
        arrived = "" if row["arrived"] == row["of"] else f" ({row['arrived']} arrived)"
        lines.append(f"| {label}{arrived} | {row['median']:.0f} | {row['last']:.0f} |")
    return lines


def growth_lines(growth) -> list[str]:
    lines = [
        "",
        "| shares | index catch-up after seeding s | list page p50 ms | requests per page "
        "| get p50 ms | create p50 ms | revoke p50 ms | followers' idle pass "
        "| pass after 1 create/share | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = growth[0]["create"]
    for row in growth:
        idle_ok = row["idle_requests"] <= 10 and row["idle_ms"] <= 50
        checks = [f"idle pass ≤ 10 requests, ≤ 50 ms: {verdict(idle_ok)}"]
        if row["size"] == SIZES[-1]:
            ratio = row["create"] / base
            checks.append(f"create {ratio:.2f}x of 100 (≤ 1.2): {verdict(ratio <= 1.2)}")
        after_requests, after_ms = row["after_create"]
        lines.append(
            f"| {row['size']:,} | {row['catch_up']:.1f} | {row['list']:.1f} "
            f"| {row['list_requests']} | {row['get']:.1f} "
            f"| {row['create']:.1f} | {row['revoke']:.1f} "
            f"| {row['idle_requests']} requests, {row['idle_ms']:.1f} ms "
            f"| {after_requests} requests, {after_ms:.0f} ms | {'; '.join(checks)} |"
        )
    rss = growth[-1]["rss_mib"]
    lines += [
        "",
        f"Peak RSS of a gunicorn worker, followers on, after serving {SIZES[-1]:,} shares:"
        f" {rss:.0f} MiB (≤ 100 MiB: {verdict(rss <= 100)})",
    ]
    return lines


def machine(couch) -> str:
    server = "Apache CouchDB" if couch.kind == "couchdb" else "pouchdb-server"
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{server} {couch.version}, gunicorn 2 workers x 4 threads, followers every 2 s"
    )


def sections(bench: "Bench", quick: bool) -> list[tuple[str, dict, object]]:
    """(title, its phases by name, how its figures print), in the order they run. Fan-out
    is last: it raises CouchDB's JavaScript process limit, and setting it back stalls every
    validate_doc_update until the processes above it idle out."""
    return [
        (
            "operations: latency, throughput, CouchDB requests",
            {
                "latency": bench.latencies,
                "one client": lambda: bench.throughputs(1),
                "eight clients": lambda: bench.throughputs(8),
                "requests": bench.request_counts,
            },
            lambda r: operations_table(
                r["latency"], r["one client"], r["eight clients"], r["requests"]
            ),
        ),
        (
            "8 concurrent creates for one owner",
            {"one owner": bench.one_owner},
            lambda r: concurrency_lines(r["one owner"]),
        ),
        (
            "end to end",
            {"end to end": bench.end_to_end},
            lambda r: end_to_end_lines(r["end to end"]),
        ),
        (
            f"growth to {SIZES[-1]:,} shares",
            {"growth": bench.growth},
            lambda r: growth_lines(r["growth"]),
        ),
        (
            "fan-out",
            {"fan-out": lambda: bench.fan_out(40 if quick else 200)},
            lambda r: fan_out_lines(r["fan-out"]),
        ),
    ]


def run_sections(bench: "Bench", quick: bool, only: list[str]) -> list[str]:
    """Run each section (those whose title starts with one of `only`, if given), and print
    its figures as soon as they are measured; a phase that fails reports why, and the
    sections after it still run."""
    planned = [
        section
        for section in sections(bench, quick)
        if not only or section[0].startswith(tuple(only))
    ]
    total, index, report = sum(len(phases) for _, phases, _ in planned), 0, []
    for title, phases, render in planned:
        results, failed = {}, None
        for name, phase in phases.items():
            index += 1
            bench.progress.phase(index, total, name)
            try:
                results[name] = phase()
            except Exception as exc:  # reported, and the sections after it still run
                traceback.print_exc()
                failed = f"{name} failed: {type(exc).__name__}: {exc}"
                break
            finally:
                settle()
        lines = [f"{title}: not measured, {failed}"] if failed else render(results)
        lines = lines if lines[0] else lines[1:]  # each section brings its own spacing
        print("\n".join(["", *lines]), flush=True)
        report += ["", *lines]
    return report[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TITLE",
        help="run only the sections whose title starts so (operations, 8 concurrent, end to"
        " end, growth, fan-out); may be given again",
    )
    report_arguments(parser)
    args = parser.parse_args()
    if args.only and args.results:
        parser.error("--results records a whole run: leave out --only")
    progress = Progress()
    progress.detail("setup: CouchDB, 40 databases, the broker under gunicorn")
    bench = Bench(samples=15 if args.quick else 60, disposable=args.disposable, progress=progress)
    described = machine(bench.couch)
    try:
        report = run_sections(bench, args.quick, args.only)
    finally:
        bench.stop()
    if args.results:
        stamp = datetime.date.today().isoformat()
        with open(args.results, "w", encoding="utf-8") as out:
            out.write(
                f"# Benchmark results\n\n{stamp}, {described}, {bench.samples} samples per "
                f"figure.\n\n" + "\n".join(report) + "\n"
            )


if __name__ == "__main__":
    main()
