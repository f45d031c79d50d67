"""Scale past CouchDB's replicator: many read-write shares on one node, under writes.

Creates the shares through the served broker (real databases, real replications), lets
them settle, measures CouchDB's idle CPU, then writes an item every `1/rate` seconds to a
random owner and times its arrival at the recipient. Reports lag percentiles, the slowest
share, CPU and memory of CouchDB and the broker.

    python -m bench.scale --mode on_change --shares 1000 --minutes 10 --results F

CouchDB keeps its replicator defaults (`max_jobs` 500, `interval` 60 s, `max_churn` 20),
but `startup_jitter`, which on-change mode needs low (see docs/deploy.md). It runs long:
apart from CI. `--baseline N` also measures idle CPU once the first N shares exist.
`--nodes 3` runs it on the launcher's 3-node cluster, the broker through its first node.
`--seed` writes the shares straight into CouchDB before the broker starts (see
`bench.seeding`): 10,000 take minutes rather than most of an hour. Nothing tells that
broker which of them it has run, so its first pass sweeps every replication once; the
bench times that pass, and waits for its end before the idle and the load.
"""

import argparse
import datetime
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.progress import Progress
from bench.run import percentile
from bench.seeding import Seeder, catch_up_indexes
from bench.stack import (
    ADMIN_TOKEN,
    collection_of,
    config_uuid,
    inventory_docs,
    item,
    report_arguments,
    start_couchdb,
)
from service.config import Settings
from service.sharing.broker import Broker
from service.sharing.core.seal import Seal
from tests.servers.broker import BrokerProcess
from tests.servers.cluster import LaunchedCluster

STATE_DB = "sharing_broker_scale"
# CouchDB's own defaults, over the tests' quick ones. Set, not deleted: CouchDB 3.5's
# scheduler crashes its config listener on a deleted `[replicator]` key, and keeps the
# value it had.
COUCHDB_DEFAULTS = {
    "interval": "60000",
    "checkpoint_interval": "30000",
    "auth_plugins": "couch_replicator_auth_session",
}
GRACE_SECONDS = 180  # after the load, for late arrivals
CLIENTS = 4
SEED_CLIENTS = 12  # seeding writes to CouchDB alone, most of it waiting on the disk
SETTLED_SAMPLES = 3  # looks 5 s apart with nothing due and no run started: a pass ended


class Processes:
    """CPU seconds and resident memory of a set of processes, from /proc."""

    def __init__(self, match):
        self.match = match

    def _pids(self) -> list[Path]:
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if self.match(proc):
                    found.append(proc)
            except OSError:
                continue  # ended meanwhile
        return found

    def cpu_seconds(self) -> float:
        total = 0
        for proc in self._pids():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / 100  # clock ticks

    def rss_mib(self) -> float:
        total = 0
        for proc in self._pids():
            try:
                status = (proc / "status").read_text()
            except OSError:
                continue
            found = re.search(r"VmRSS:\s+(\d+)", status)
            total += int(found.group(1)) if found else 0
        return total / 1024

    def cpu_percent(self, seconds: float) -> float:
        before = self.cpu_seconds()
        time.sleep(seconds)
        return 100 * (self.cpu_seconds() - before) / seconds


def cmdline(proc: Path) -> str:
    return (proc / "cmdline").read_text()


def couchdb_processes(couch) -> Processes:
    """A launched server's processes (its Erlang VM and JavaScript ones): those run from
    its directory. None for a server given by URL."""
    home = str(getattr(couch, "_dir", ""))
    return Processes(lambda proc: bool(home) and home in cmdline(proc))


def broker_processes(broker: BrokerProcess) -> Processes:
    master = str(broker.process.pid)

    def ours(proc: Path) -> bool:
        if proc.name == master:
            return True
        status = (proc / "status").read_text()
        return re.search(r"PPid:\s+(\d+)", status).group(1) == master

    return Processes(ours)


class Scale:
    def __init__(self, args):
        self.args = args
        if args.nodes > 1:
            self.cluster = LaunchedCluster(os.environ["COUCHDB_LAUNCHER"], args.nodes).start()
            self.nodes = self.cluster.nodes
            self.couchdb = Processes(lambda proc: str(self.cluster.dir) in cmdline(proc))
        else:
            self.cluster = None
            self.nodes = [start_couchdb(args.disposable)]
            self.couchdb = couchdb_processes(self.nodes[0])
        self.couch = self.nodes[0]
        for node in self.nodes:
            for key, value in {**COUCHDB_DEFAULTS, "startup_jitter": "0"}.items():
                node.set_config("replicator", key, value)
            if args.max_dbs_open:
                node.set_config("couchdb", "max_dbs_open", str(args.max_dbs_open))
        self.report: list[str] = []
        self.progress = Progress()
        self.pairs: list[tuple[str, str]] = []  # (owner db, recipient db) per share
        self.broker: BrokerProcess | None = None

    def start_broker(self) -> None:
        self.broker = BrokerProcess(
            self.couch,
            STATE_DB,
            ADMIN_TOKEN,
            ready_seconds=300,  # its first pass reads every replication of the seeded shares
            BROKER_WORKERS="2",
            BROKER_THREADS="4",
            BROKER_FOLLOW_INTERVAL="2",
            BROKER_REPLICATION_MODE=self.args.mode,
        )
        self.brokers = broker_processes(self.broker)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"

    def call(self, method: str, path: str, **kwargs):
        for _ in range(5):
            response = self.http.request(method, self.broker.url + path, timeout=120, **kwargs)
            if response.status_code != 503:
                break
            time.sleep(float(response.headers.get("Retry-After", "1")))
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response

    def line(self, text: str) -> None:
        print(text, flush=True)
        self.report.append(text)

    # Setting up

    def _database(self, n: int) -> tuple[str, str]:
        name, uid = f"scale-{n:05d}", config_uuid(n)
        self.couch.create_db(name, inventory_docs(uid))
        self.call("POST", "/v1/databases", json={"database": name})
        return name, uid

    def _share(self, n: int) -> tuple[str, str]:
        (owner, owner_uuid), (recipient, recipient_uuid) = (
            self._database(2 * n),
            self._database(2 * n + 1),
        )
        body = {
            "owner": owner_uuid,
            "recipient": recipient_uuid,
            "access": "read-write",
            "collections": [collection_of(owner_uuid)],
        }
        self.call("POST", "/v1/shares", json=body)
        return owner, recipient

    def seed(self, count: int) -> None:
        """Write the shares directly, before the broker starts (see `bench.seeding`)."""
        served = Settings(  # as the served broker's, so that it derives the same record key
            couchdb_url=self.couch.url,
            couchdb_user=self.couch.admin[0],
            couchdb_password=self.couch.admin[1],
            admin_tokens=(ADMIN_TOKEN,),
            state_db=STATE_DB,
        )
        seeder = Seeder(self.couch, STATE_DB, Seal(served.record_key), "scale")
        Broker.from_settings(served).store.ensure()  # its indexes
        # Seeded users carry the broker's own cheap hash, and keep it, as deploy.md advises:
        # with the upgrade on, CouchDB would hash each again at 600,000 rounds on its first
        # login, and then every run after 10 idle minutes would verify that (bench/runs.py).
        for node in self.nodes:
            node.set_config("chttpd_auth", "upgrade_hash_on_auth", "false")
        started = time.monotonic()
        self.pairs = seeder.seed(
            0, count, SEED_CLIENTS, lambda made: self.progress.count(made, count, "shares seeded")
        )
        seconds = time.monotonic() - started
        self.progress.detail("bringing the state database's indexes up to date")
        indexed = catch_up_indexes(self.couch, STATE_DB)
        self.line(
            f"- seeded {count} shares (2 databases each, their users, guards, registrations,"
            f" records and held replicator docs, written directly) in {seconds:.0f} s; the"
            f" state database's indexes caught up in {indexed:.0f} s; CouchDB's"
            " `upgrade_hash_on_auth` off (see bench.scale.Scale.seed)"
        )

    def first_pass(self) -> None:
        """Wait until the broker has run every replication once: nothing due, and no run
        started over `SETTLED_SAMPLES` looks in a row."""
        self.progress.detail("the broker's first pass: every replication once")
        cpu_couch, cpu_broker = self.couchdb.cpu_seconds(), self.brokers.cpu_seconds()
        started, seen, quiet = time.monotonic(), None, 0
        while quiet < SETTLED_SAMPLES:
            time.sleep(5)
            metrics = self.call("GET", "/metrics").text
            ran = metric(metrics, "sharing_broker_replication_runs_total")
            due = metric(metrics, "sharing_broker_replications_due")
            quiet = quiet + 1 if due == 0 and ran == seen else 0
            seen = ran
            self.progress.detail(f"first pass: {ran:.0f} runs, {due:.0f} due")
        seconds = time.monotonic() - started - 5 * SETTLED_SAMPLES
        couch_cpu = 100 * (self.couchdb.cpu_seconds() - cpu_couch) / seconds
        broker_cpu = 100 * (self.brokers.cpu_seconds() - cpu_broker) / seconds
        spared = metric(metrics, "sharing_broker_replication_runs_spared_total")
        self.line(
            f"- the broker's first pass (nothing saved: every replication swept once):"
            f" {seen:.0f} runs and {spared:.0f} spared in {seconds:.0f} s; CPU CouchDB"
            f" {couch_cpu:.0f}%, broker {broker_cpu:.0f}%"
        )

    def grow_to(self, count: int) -> None:
        first = len(self.pairs)
        started = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            for made, pair in enumerate(pool.map(self._share, range(first, count)), first + 1):
                self.pairs.append(pair)
                self.progress.count(made, count, "shares created")
        seconds = time.monotonic() - started
        self.line(
            f"- created shares {first + 1} to {count} (2 databases each, registered, then the"
            f" share) in {seconds:.0f} s, {1000 * seconds / (count - first):.0f} ms a share"
            f" with {CLIENTS} clients"
        )

    def idle(self, label: str) -> float:
        self.progress.detail(f"settling {self.args.settle:g} s, then CPU over 60 s")
        time.sleep(self.args.settle)
        couchdb = self.couchdb.cpu_percent(60)
        broker = self.brokers.cpu_percent(10)
        self.line(
            f"- idle with {label}: CouchDB {couchdb:.1f}% of a core over 60 s,"
            f" broker {broker:.1f}%; memory CouchDB {self.couchdb.rss_mib():.0f} MiB,"
            f" broker {self.brokers.rss_mib():.0f} MiB; {self.jobs()}"
        )
        return couchdb

    def jobs(self) -> str:
        total = self.couch.get("_scheduler/jobs", limit="0")["total_rows"]
        docs = self.couch.get("_replicator/_all_docs", limit="0")["total_rows"]
        return f"{total} replication jobs in the scheduler, {docs} docs in `_replicator`"

    # The load

    def load(self, idle_cpu: float) -> None:
        """Writes at `--rate`; `idle_cpu` (CouchDB's, in % of a core) is subtracted from its
        CPU under load to tell what one write cost it."""
        self.progress.detail(f"{self.args.rate:g} writes/s for {self.args.minutes:g} min")
        pending: dict[str, tuple[int, float, str]] = {}  # doc id -> (share, written, target)
        lags: dict[str, tuple[int, float]] = {}
        lock = threading.Lock()
        done = threading.Event()

        def check() -> None:
            """Until every write arrived, or `GRACE_SECONDS` after the load's end."""
            while (pending or not done.is_set()) and time.monotonic() < end + GRACE_SECONDS:
                with lock:
                    due = list(pending.items())
                for doc_id, (share, written, target) in due:
                    response = self.couch.request("HEAD", f"{target}/{doc_id}")
                    if response.status_code == 200:
                        with lock:
                            pending.pop(doc_id)
                            lags[doc_id] = (share, time.monotonic() - written)
                time.sleep(0.05)

        runs_before = self.runs_started() if self.args.mode == "on_change" else 0.0
        end = time.monotonic() + self.args.minutes * 60
        checker = threading.Thread(target=check, daemon=True)
        checker.start()
        cpu_couch, cpu_broker = self.couchdb.cpu_seconds(), self.brokers.cpu_seconds()
        started = time.monotonic()
        written = 0
        rng = random.Random(17)  # noqa: S311 (which owner, not a secret)
        while time.monotonic() < end:
            share = rng.randrange(len(self.pairs))
            owner, recipient = self.pairs[share]
            uid = config_uuid(2 * share)
            doc = item(uid, f"load-{written}")
            self.couch.put(f"{owner}/{doc['_id']}", doc)
            with lock:
                pending[doc["_id"]] = (share, time.monotonic(), recipient)
            written += 1
            time.sleep(max(0.0, started + written / self.args.rate - time.monotonic()))
        seconds = time.monotonic() - started
        couch_cpu = 100 * (self.couchdb.cpu_seconds() - cpu_couch) / seconds
        broker_cpu = 100 * (self.brokers.cpu_seconds() - cpu_broker) / seconds
        memory = (
            f"CouchDB {self.couchdb.rss_mib():.0f} MiB, broker {self.brokers.rss_mib():.0f} MiB"
        )
        done.set()
        checker.join(GRACE_SECONDS + 30)
        values = sorted(lag for _, lag in lags.values())
        missing = written - len(values)
        per_write = 10 * (couch_cpu - idle_cpu) / (written / seconds)  # ms of CPU a write
        self.line(
            f"- load: {written} writes in {seconds:.0f} s ({written / seconds:.2f}/s) to random"
            f" owners; CPU under load: CouchDB {couch_cpu:.1f}%, broker {broker_cpu:.1f}%;"
            f" CouchDB CPU a write, over idle: {per_write:.0f} ms; memory {memory};"
            f" {self.jobs()}"
        )
        if values:
            p50, p95, p99 = (percentile(values, p) for p in (50, 95, 99))
            self.line(
                f"- lag, write to recipient: p50 {p50:.2f} s, p95 {p95:.2f} s, p99"
                f" {p99:.2f} s, max {values[-1]:.2f} s over {len(values)} arrivals;"
                f" {missing} not arrived within {GRACE_SECONDS} s of the load's end"
            )
        worst = max(lags.items(), key=lambda entry: entry[1][1], default=None)
        if worst is not None:
            share, lag = worst[1]
            owner, recipient = self.pairs[share]
            self.line(f"- slowest share: {owner} → {recipient}, {lag:.2f} s")
        if self.args.mode == "on_change":
            runs = self.runs_started() - runs_before
            self.line(f"- on-change runs started during the load and its grace: {runs:.0f}")

    def runs_started(self) -> float:
        metrics = self.call("GET", "/metrics").text
        return metric(metrics, "sharing_broker_replication_runs_total")

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
        if self.cluster is not None:
            self.cluster.stop()
        elif hasattr(self.couch, "stop"):
            self.couch.stop()


def metric(text: str, name: str) -> float:
    """A metric's value in the broker's `/metrics`; 0 when it has none yet."""
    found = re.search(rf"^{name} (\S+)", text, re.M)
    return float(found.group(1)) if found else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("continuous", "on_change"), required=True)
    parser.add_argument("--shares", type=int, default=1000)
    parser.add_argument("--baseline", type=int, default=0, help="idle CPU at this many first")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=2.0, help="writes a second")
    parser.add_argument("--settle", type=float, default=90, help="seconds before idle CPU")
    parser.add_argument("--nodes", type=int, choices=(1, 3), default=1, help="CouchDB nodes")
    parser.add_argument(
        "--seed", action="store_true", help="write the shares directly, then start the broker"
    )
    parser.add_argument("--max-dbs-open", type=int, default=0, help="CouchDB's, if set")
    report_arguments(parser)
    args = parser.parse_args()
    scale = Scale(args)
    try:
        scale.line(
            f"### {args.mode}: {args.shares} read-write shares, {args.rate:g} writes/s for"
            f" {args.minutes:g} min, {args.nodes} CouchDB node{'s' if args.nodes > 1 else ''}"
            f" ({datetime.date.today().isoformat()})"
        )
        if args.seed:
            scale.seed(args.shares)
            scale.start_broker()
            if args.mode == "on_change":
                scale.first_pass()
        else:
            scale.start_broker()
            if args.baseline:
                scale.grow_to(args.baseline)
                scale.idle(f"{args.baseline} shares")
            scale.grow_to(args.shares)
        scale.load(scale.idle(f"{args.shares} shares"))
    finally:
        scale.stop()
    if args.results:
        Path(args.results).write_text("\n".join(scale.report) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
