"""Run the broker locally with Alice's and Bob's demo databases.

    scripts/dev   (it runs scripts/setup first, then this module)

The CouchDB is chosen as `tests/servers/choose.py` says: Apache CouchDB where one is given
(`COUCHDB_URL`, `COUCHDB_LAUNCHER` or Docker), else pouchdb-server, on which no document
crosses. Ctrl-C or SIGTERM stops everything this started and removes its temporary folders.
Ports: COUCH_PORT (default 5984) and BROKER_PORT (default 8000); `scripts/dev` checks both
before it sets up.
"""

import os
import signal
import subprocess
import sys

from tests.servers.admin import AdminHttp
from tests.servers.choose import start_server
from tests.servers.demo import ALICE, BOB, alice_docs, bob_docs

DEV_TOKEN = "local-dev-admin-token"
DEV_PASSWORD = "local-dev-password"


def load_demo(couch: AdminHttp) -> None:
    """Alice's and Bob's databases and users; on a server that has them already, kept."""
    for person, docs in (("alice", alice_docs()), ("bob", bob_docs())):
        db = f"inventory-{person}"
        if couch.request("HEAD", db).status_code == 404:
            couch.create_db(db, docs)
        user = f"_users/org.couchdb.user:{person}"
        password = f"{person}-password" if couch.request("HEAD", user).status_code == 404 else None
        couch.add_member(db, person, password)


def serve(couch: AdminHttp, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "BROKER_COUCHDB_URL": couch.url,
        "BROKER_COUCHDB_USER": couch.admin[0],
        "BROKER_COUCHDB_PASSWORD": couch.admin[1],
        "BROKER_ADMIN_TOKENS": DEV_TOKEN,
        "BROKER_BIND": f"127.0.0.1:{port}",
        "BROKER_WORKERS": "1",
    }
    return subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], env=env)


def main() -> int:
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM cleans up as Ctrl-C
    couch_port = int(os.environ.get("COUCH_PORT", "5984"))
    broker_port = int(os.environ.get("BROKER_PORT", "8000"))
    print("dev: starting a CouchDB server...", flush=True)
    broker = None
    couch = start_server(port=couch_port, password=DEV_PASSWORD)
    try:
        print(f"dev: {couch.describe()}", flush=True)
        load_demo(couch)
        print(
            f"CouchDB admin: {couch.admin[0]} (password {couch.admin[1]})\n"
            f"demo databases: inventory-alice ({ALICE}), inventory-bob ({BOB})\n"
            "their users: alice (password alice-password), bob (password bob-password)\n"
            f"broker: http://127.0.0.1:{broker_port}  docs: http://127.0.0.1:{broker_port}/docs\n"
            f"admin token: {DEV_TOKEN}\n"
            "the admin CLI, from another shell in this folder:\n"
            f"  export BROKER_URL=http://127.0.0.1:{broker_port} BROKER_TOKEN={DEV_TOKEN}\n"
            "  .venv/bin/sharing-broker shares list\n"
            "Ctrl-C stops it all.\n",
            flush=True,
        )
        broker = serve(couch, broker_port)
        return broker.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(timeout=30)
        couch.stop()
        print("dev: stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
