"""The benchmark's own stack: Apache CouchDB, the broker under gunicorn, and user databases."""

import argparse
import os
import time
import uuid
from pathlib import Path

import requests

from tests.servers.admin import AdminHttp
from tests.servers.broker import BrokerProcess
from tests.servers.choose import start_server
from tests.servers.couchdb import TEST_SETTINGS, RunningCouchDB

ADMIN_TOKEN = "bench-admin-token-0123456789"
# The tests' replicator settings, so that jobs start at once for broker and floor alike.
# New users keep CouchDB's default hashing, so the figures show what a real server costs.
BENCH_SETTINGS = {key: v for key, v in TEST_SETTINGS.items() if key[0] == "replicator"}


def report_arguments(parser: argparse.ArgumentParser) -> None:
    """`--results` and `--disposable`, which every bench takes."""
    parser.add_argument("--results", help="also write the report to this markdown file")
    parser.add_argument(
        "--disposable",
        action="store_true",
        help="the server at COUCHDB_URL may be filled and tuned (never without it)",
    )


def start_couchdb(disposable: bool) -> AdminHttp:
    """A CouchDB the bench may fill: one it starts itself (`COUCHDB_LAUNCHER` or Docker), or
    the one at `COUCHDB_URL` when `disposable` says it may be written to and tuned.

    pouchdb-server only when asked for (`COUCHDB_SERVER=pouchdb`): nothing replicates there.
    """
    if os.environ.get("COUCHDB_URL") and not disposable:
        raise SystemExit(
            "COUCHDB_URL names a server the bench did not start. It writes thousands of"
            " records and replicator docs there and changes its replicator settings: pass"
            " --disposable if that server may be used so."
        )
    os.environ.setdefault("COUCHDB_SERVER", "couchdb")
    server = start_server(tune=False)
    if server.kind == "couchdb":
        for (section, key), value in BENCH_SETTINGS.items():
            server.set_config(section, key, value)
    return server


def stop_couchdb(server: AdminHttp, footprint: list[str]) -> None:
    """Stop a server the bench started; on one it was lent, remove what it wrote."""
    if not isinstance(server, RunningCouchDB):
        server.stop()
        return
    for db in footprint:
        server.request("DELETE", db)


def config_uuid(n: int) -> str:
    return str(uuid.UUID(int=n + 1, version=4))


def collection_of(config_uuid: str) -> str:
    """The id of a bench database's one collection: its own, as a real app's would be."""
    return f"c0ll-{config_uuid}"


def item_id(config_uuid: str, key: str) -> str:
    return f"item-{config_uuid}-{key}"


def item(config_uuid: str, key: str) -> dict:
    """An item in the database's one collection."""
    return {
        "_id": item_id(config_uuid, key),
        "type": "item",
        "data": {"name": key, "collection_id": collection_of(config_uuid)},
    }


def inventory_docs(config_uuid: str) -> list[dict]:
    """An Inventory database's docs: its config, one collection and one item in it."""
    collection = {
        "_id": f"collection-{collection_of(config_uuid)}",
        "type": "collection",
        "data": {"name": "Kitchen", "config_uuid": config_uuid},
    }
    return [{"_id": "0000-config", "uuid": config_uuid}, collection, item(config_uuid, "0")]


def make_databases(couch: AdminHttp, count: int) -> list[tuple[str, str]]:
    """`count` Inventory databases, each with its config, one collection and one item."""
    made = []
    for n in range(count):
        name, uid = f"bench-user-{n:03d}", config_uuid(n)
        couch.create_db(name, inventory_docs(uid))
        couch.add_member(name, name)
        made.append((name, uid))
    return made


class Broker:
    """`sharing-broker serve` in a subprocess: the real serving path."""

    def __init__(self, couch: AdminHttp, state_db: str, workers: int = 2, threads: int = 4):
        self.served = BrokerProcess(
            couch,
            state_db,
            ADMIN_TOKEN,
            BROKER_WORKERS=str(workers),
            BROKER_THREADS=str(threads),
            BROKER_FOLLOW_INTERVAL="2",  # the followers run, as they do in production
            # The figures in RESULTS.md are continuous mode's; bench.scale compares modes.
            BROKER_REPLICATION_MODE="continuous",
        )
        self.url = self.served.url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"

    def call(self, method: str, path: str, retries: int = 0, **kwargs) -> requests.Response:
        """One API call; a 503 is tried again `retries` times, after its Retry-After."""
        response = self.session.request(method, self.url + path, timeout=60, **kwargs)
        if response.status_code == 503 and retries:
            time.sleep(float(response.headers.get("Retry-After", "1")))
            return self.call(method, path, retries - 1, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response

    def worker_peak_rss_mib(self) -> float:
        """The largest peak RSS (VmHWM) among the gunicorn workers."""
        peaks = []
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
            except OSError:
                continue  # the process ended meanwhile
            if fields.get("PPid", "").strip() == str(self.served.process.pid):
                peaks.append(int(fields["VmHWM"].split()[0]) / 1024)
        return max(peaks)

    def stop(self) -> None:
        self.served.stop()
