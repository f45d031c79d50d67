"""What one replication run costs, by the way it is started (#29, "measure first"): a
one-shot `_replicator` doc written again, against a transient `POST /_replicate`, which
leaves no doc for the replicator to write a run's end into.

Then what a transient run costs when it logs in as a share user whose login CouchDB no
longer keeps (`[couch_passwords_cache] max_idle`, 10 minutes): the password hashed at the
server's rounds, as `upgrade_hash_on_auth` leaves it after the first login, against the
broker's own `SHARE_USER_ITERATIONS`. Each such run is a new user's first.

Each run follows one new doc written to the source, and carries it with a selector, as a
share's does. CouchDB's CPU is read from /proc for the server the bench starts.

    python -m bench.runs [--runs 50] [--results F]
"""

import argparse
import datetime
import threading
import time
import uuid
from pathlib import Path

from bench.run import percentile
from bench.scale import Processes, couchdb_processes
from bench.stack import report_arguments, start_couchdb, stop_couchdb
from service.sharing.placing.credentials import (
    SHARE_USER_ITERATIONS,
    hashed_password,
    new_password,
)
from tests.servers.admin import AdminHttp

SOURCE, TARGET = "runs-bench-source", "runs-bench-target"
SELECTOR = {"type": "item", "data.collection_id": "c0ll-runs"}
RUN_DOC = "runs-bench"


def endpoint(couch: AdminHttp, db: str, user: tuple[str, str] | None = None) -> dict:
    """`db` as a replication endpoint, logging in as `user` (the admin if none)."""
    name, password = user or couch.admin
    return {"url": f"{couch.url}/{db}", "auth": {"basic": {"username": name, "password": password}}}


def new_item(couch: AdminHttp) -> str:
    doc_id = f"item-{uuid.uuid4().hex}"
    doc = {"_id": doc_id, "type": "item", "data": {"collection_id": "c0ll-runs"}}
    couch.put(f"{SOURCE}/{doc_id}", doc)
    return doc_id


def arrived(couch: AdminHttp, doc_id: str) -> bool:
    return couch.request("GET", f"{TARGET}/{doc_id}").status_code == 200


def seq(couch: AdminHttp, db: str) -> str:
    return couch.get(db)["update_seq"]


def next_change(couch: AdminHttp, db: str, doc_id: str, since: str) -> str:
    """Wait, in one long poll, for the next change of `doc_id` in `db` after `since`."""
    params = {"feed": "longpoll", "since": since, "filter": "_doc_ids", "timeout": 30000}
    found = couch.request("POST", f"{db}/_changes", params=params, json={"doc_ids": [doc_id]})
    return found.json()["last_seq"]


def by_doc(couch: AdminHttp, runs: int) -> list[float]:
    """Write the one-shot doc again after each new item; time until the item arrives, then
    wait for the replicator to write the run's end into the doc."""
    spec = {"source": endpoint(couch, SOURCE), "target": endpoint(couch, TARGET)}
    spec |= {"selector": SELECTOR, "continuous": False}
    times = []
    for _ in range(runs):
        doc_id = new_item(couch)
        current = couch.request("GET", f"_replicator/{RUN_DOC}")
        doc = {**spec, "_rev": current.json()["_rev"]} if current.ok else spec
        target_seq, replicator_seq = seq(couch, TARGET), seq(couch, "_replicator")
        started = time.perf_counter()
        couch.put(f"_replicator/{RUN_DOC}", doc)
        next_change(couch, TARGET, doc_id, target_seq)
        times.append((time.perf_counter() - started) * 1000)
        while couch.get(f"_replicator/{RUN_DOC}").get("_replication_state") != "completed":
            replicator_seq = next_change(couch, "_replicator", RUN_DOC, replicator_seq)
    return times


def transient(couch: AdminHttp, runs: int) -> list[float]:
    """`POST /_replicate` after each new item, which answers once the run has ended; time
    until the item arrives, as for the doc."""
    body = {"source": endpoint(couch, SOURCE), "target": endpoint(couch, TARGET)}
    body |= {"selector": SELECTOR}
    times = []
    for _ in range(runs):
        doc_id = new_item(couch)
        target_seq = seq(couch, TARGET)
        started = time.perf_counter()
        run = threading.Thread(
            target=couch.request, args=("POST", "_replicate"), kwargs={"json": body}
        )
        run.start()
        next_change(couch, TARGET, doc_id, target_seq)
        times.append((time.perf_counter() - started) * 1000)
        run.join()
        if not arrived(couch, doc_id):
            raise RuntimeError(f"{doc_id} not at the target after its transient run")
    return times


def cold_logins(
    couch: AdminHttp, cpu: Processes, runs: int, rehashed: bool
) -> tuple[list[float], float]:
    """A transient run as a new user each time, with its password hashed by CouchDB at its
    own rounds (`rehashed`) or by the broker; the times, and CouchDB's CPU seconds during
    the runs alone (the users are written, and removed, outside them)."""
    times, spent = [], 0.0
    for _ in range(runs):
        name, password = f"runs-bench-{uuid.uuid4().hex[:12]}", new_password()
        hashed = {"password": password} if rehashed else hashed_password(password)
        couch.put(
            f"_users/org.couchdb.user:{name}", {"name": name, "type": "user", "roles": [], **hashed}
        )
        for db in (SOURCE, TARGET):
            security = couch.get(f"{db}/_security")
            security.setdefault("members", {}).setdefault("names", []).append(name)
            couch.put(f"{db}/_security", security)
        user = (name, password)
        body = {
            "source": endpoint(couch, SOURCE, user),
            "target": endpoint(couch, TARGET, user),
            "selector": SELECTOR,
        }
        doc_id = new_item(couch)
        before, started = cpu.cpu_seconds(), time.perf_counter()
        couch.request("POST", "_replicate", json=body).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
        spent += cpu.cpu_seconds() - before
        couch.delete_doc("_users", f"org.couchdb.user:{name}")
        if not arrived(couch, doc_id):
            raise RuntimeError(f"{doc_id} not at the target after its transient run")
    return times, spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50, help="runs per way")
    report_arguments(parser)
    args = parser.parse_args()
    couch = start_couchdb(args.disposable)
    cpu = couchdb_processes(couch)
    header = (
        f"### One replication run ({datetime.date.today().isoformat()}, Apache CouchDB"
        f" {couch.version}, one node, {args.runs} runs a way, `startup_jitter` 0)"
    )
    report = [header, "", "| started by | item to target p50 / p95 | CouchDB CPU a run |"]
    report.append("|---|---|---|")
    print(header, flush=True)
    try:
        for db in (SOURCE, TARGET):
            couch.create_db(db, [])
        for name, way in (
            ("a one-shot `_replicator` doc", by_doc),
            ("`POST /_replicate`", transient),
        ):
            way(couch, 3)  # warm: the replication's checkpoints exist
            before = cpu.cpu_seconds()
            times = way(couch, args.runs)
            per_run = (cpu.cpu_seconds() - before) / args.runs * 1000
            report.append(
                f"| {name} | {percentile(times, 50):.0f} / {percentile(times, 95):.0f} ms"
                f" | {per_run:.0f} ms |"
            )
            print(report[-1], flush=True)
        couch.set_config("chttpd_auth", "upgrade_hash_on_auth", "false")  # kept as written
        rounds = couch.get("_node/_local/_config/chttpd_auth").get("iterations", "600000")
        for name, rehashed in (
            (f"`POST /_replicate`, a cold login, hash at the server's {rounds} rounds", True),
            (f"`POST /_replicate`, a cold login, hash at {SHARE_USER_ITERATIONS} rounds", False),
        ):
            times, spent = cold_logins(couch, cpu, args.runs, rehashed)
            report.append(
                f"| {name} | {percentile(times, 50):.0f} / {percentile(times, 95):.0f} ms"
                f" | {spent / args.runs * 1000:.0f} ms |"
            )
            print(report[-1], flush=True)
    finally:
        couch.delete_doc("_replicator", RUN_DOC)
        stop_couchdb(couch, [SOURCE, TARGET])
    if args.results:
        Path(args.results).write_text("\n".join(report) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
