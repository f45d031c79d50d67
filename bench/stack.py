"""The benchmark's own stack: pouchdb-server, the broker under gunicorn, and user databases."""

import uuid
from pathlib import Path

import requests

from tests.servers.broker import BrokerProcess
from tests.servers.pouchdb import PouchServer

ADMIN_TOKEN = "bench-admin-token-0123456789"


def config_uuid(n: int) -> str:
    return str(uuid.UUID(int=n + 1, version=4))


def collection_of(config_uuid: str) -> str:
    """The id of a bench database's one collection: its own, as a real app's would be."""
    return f"c0ll-{config_uuid}"


def make_databases(couch: PouchServer, count: int) -> list[tuple[str, str]]:
    """`count` Inventory databases, each with its config and one collection of its own."""
    made = []
    for n in range(count):
        name, uid = f"bench-user-{n:03d}", config_uuid(n)
        collection = {
            "_id": f"collection-{collection_of(uid)}",
            "type": "collection",
            "data": {"name": "Kitchen", "config_uuid": uid},
        }
        couch.create_db(name, [{"_id": "0000-config", "uuid": uid}, collection])
        couch.add_member(name, name)
        made.append((name, uid))
    return made


class Broker:
    """`sharing-broker serve` in a subprocess: the real serving path."""

    def __init__(self, couch: PouchServer, state_db: str, workers: int = 2, threads: int = 4):
        self.served = BrokerProcess(
            couch,
            state_db,
            ADMIN_TOKEN,
            BROKER_WORKERS=str(workers),
            BROKER_THREADS=str(threads),
            # Seeded shares have no databases to follow; the followers' cost is counted apart.
            BROKER_FOLLOW_INTERVAL="0",
        )
        self.url = self.served.url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        response = self.session.request(method, self.url + path, timeout=60, **kwargs)
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
