"""What a write pays for the write guard, as the number of shares a database takes part in
grows (#29, "measure first"): one guard design doc holding N scopes (today's design)
against N guard design docs of one scope each (a guard per share).

For N in 1, 10, 100 and 200, on Apache CouchDB, sequential single-doc writes:
- by the database's own user (the app's device), whom every guard lets through at once;
- by a share user whose scope one guard holds, writing inside it (the replicator's writes).

    python -m bench.guards [--writes 100] [--results F]
"""

import argparse
import datetime
import time
import uuid
from pathlib import Path

import requests

from bench.run import percentile
from bench.stack import report_arguments, start_couchdb, stop_couchdb
from service.sharing.placing.guard import GUARD_ID, guard_doc
from tests.servers.admin import AdminHttp

SIZES = (1, 10, 100, 200)
OWNER = ("guard-bench-owner", "owner-password-0123")
SHARE_USER = ("sharing-broker-share-0", "share-password-0123")
BROKER = "guard_bench"


def scope(n: int) -> dict:
    """A read-write share's scope: two collections, no rules."""
    return {"collections": [f"c0ll-{n}-a", f"c0ll-{n}-b"], "read_only": False}


def guards(count: int, per_share: bool) -> list[dict]:
    """The guard docs for `count` shares: one doc for all, or one each."""
    scopes = {f"sharing-broker-share-{n}": scope(n) for n in range(count)}
    if not per_share:
        return [guard_doc(scopes, BROKER)]
    return [
        {**guard_doc({name: value}, BROKER), "_id": f"{GUARD_ID}-{n}"}
        for n, (name, value) in enumerate(scopes.items())
    ]


def item(collection: str) -> dict:
    """An item in a shared collection, as the app writes it."""
    key = uuid.uuid4().hex
    data = {"name": key, "collection_id": collection}
    return {"_id": f"item-{key}", "type": "item", "data": data}


def write_times(couch: AdminHttp, db: str, who: tuple[str, str], writes: int) -> list[float]:
    """Milliseconds per single-doc write, as `who`, over one kept-alive connection."""
    session, times = requests.Session(), []
    session.auth = who
    for _ in range(writes):
        doc = item("c0ll-0-a")
        started = time.perf_counter()
        response = session.put(f"{couch.url}/{db}/{doc['_id']}", json=doc, timeout=60)
        times.append((time.perf_counter() - started) * 1000)
        if not response.ok:
            raise RuntimeError(f"{who[0]}'s write to {db}: {response.status_code} {response.text}")
    return times


def make_user(couch: AdminHttp, name: str, password: str) -> None:
    body = {"name": name, "password": password, "roles": [], "type": "user"}
    couch.request("PUT", f"_users/org.couchdb.user:{name}", json=body).raise_for_status()


def timed_writes(
    couch: AdminHttp, count: int, per_share: bool, writes: int
) -> tuple[list[float], list[float]]:
    """A database guarded for `count` shares: its device's write times, then its share
    user's."""
    db = f"guard-bench-{count}-{'each' if per_share else 'one'}"
    couch.create_db(db, [{"_id": "0000-config", "uuid": str(uuid.uuid4())}])
    members = {"names": [OWNER[0], SHARE_USER[0]], "roles": []}
    couch.put(f"{db}/_security", {"admins": {"names": [], "roles": []}, "members": members})
    if count:
        couch.request("POST", f"{db}/_bulk_docs", json={"docs": guards(count, per_share)})
    try:
        write_times(couch, db, OWNER, 5)  # warm: each guard compiled once
        write_times(couch, db, SHARE_USER, 5)
        return write_times(couch, db, OWNER, writes), write_times(couch, db, SHARE_USER, writes)
    finally:
        couch.request("DELETE", db)


def describe(count: int, per_share: bool) -> str:
    if not count:
        return "none (the floor)"
    plural = "s" if count > 1 else ""
    if per_share:
        return f"{count} doc{plural}, a scope each"
    return f"1 doc, {count} scope{plural}"


def measure(couch: AdminHttp, writes: int) -> list[str]:
    lines = [
        "| guards | shares | device write p50 / p95 | share user's write p50 / p95 |",
        "|---|---|---|---|",
    ]
    forms = [(0, False)] + [(count, per_share) for count in SIZES for per_share in (False, True)]
    for count, per_share in forms:
        device, share = timed_writes(couch, count, per_share, writes)
        lines.append(
            f"| {describe(count, per_share)} | {count} | {percentile(device, 50):.1f} / "
            f"{percentile(device, 95):.1f} ms | {percentile(share, 50):.1f} / "
            f"{percentile(share, 95):.1f} ms |"
        )
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writes", type=int, default=100, help="timed writes per figure")
    report_arguments(parser)
    args = parser.parse_args()
    couch = start_couchdb(args.disposable)
    setting = couch.request("GET", f"{couch.config_path}/query_server_config/os_process_limit")
    limit = setting.json() if setting.ok else "100 (the default)"
    header = (
        f"### The guard's cost per write ({datetime.date.today().isoformat()}, Apache CouchDB"
        f" {couch.version}, `os_process_limit` {limit}, {args.writes} writes per figure)"
    )
    print(header, flush=True)
    try:
        make_user(couch, *OWNER)
        make_user(couch, *SHARE_USER)
        report = [header, "", *measure(couch, args.writes)]
    finally:
        for name, _ in (OWNER, SHARE_USER):
            couch.delete_doc("_users", f"org.couchdb.user:{name}")
        stop_couchdb(couch, [])
    if args.results:
        Path(args.results).write_text("\n".join(report) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
