"""Run the broker locally against pouchdb-server, with Alice's and Bob's demo databases.

    python -m tests.pouchdb.dev   (scripts/dev does the setup first)

Stops both with Ctrl-C. Ports: COUCH_PORT (default 5984) and BROKER_PORT (default 8000).
"""

import os
import subprocess
import sys

from tests.pouchdb.demo import ALICE, BOB, alice_docs, bob_docs
from tests.pouchdb.server import PouchServer

DEV_TOKEN = "local-dev-admin-token"
DEV_PASSWORD = "local-dev-password"


def main() -> int:
    couch_port = int(os.environ.get("COUCH_PORT", "5984"))
    broker_port = int(os.environ.get("BROKER_PORT", "8000"))
    couch = PouchServer(port=couch_port, password=DEV_PASSWORD).start()
    try:
        for person, docs in (("alice", alice_docs()), ("bob", bob_docs())):
            couch.create_db(f"inventory-{person}", docs)
            couch.add_member(f"inventory-{person}", person, f"{person}-password")
        env = {
            **os.environ,
            "BROKER_COUCHDB_URL": couch.url,
            "BROKER_COUCHDB_USER": couch.admin[0],
            "BROKER_COUCHDB_PASSWORD": DEV_PASSWORD,
            "BROKER_ADMIN_TOKENS": DEV_TOKEN,
        }
        print(
            f"pouchdb-server: {couch.url} (user {couch.admin[0]}, password {DEV_PASSWORD})\n"
            f"demo databases: inventory-alice ({ALICE}), inventory-bob ({BOB})\n"
            "their users: alice (password alice-password), bob (password bob-password)\n"
            f"broker: http://127.0.0.1:{broker_port}  docs: http://127.0.0.1:{broker_port}/docs\n"
            f"admin token: {DEV_TOKEN}\n",
            flush=True,
        )
        env["BROKER_BIND"] = f"127.0.0.1:{broker_port}"
        env["BROKER_WORKERS"] = "1"
        return subprocess.call([sys.executable, "-m", "service.cli", "serve"], env=env)
    except KeyboardInterrupt:
        return 0
    finally:
        couch.stop()


if __name__ == "__main__":
    sys.exit(main())
