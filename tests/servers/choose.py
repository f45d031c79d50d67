"""One way to get a CouchDB for dev, tests and bench, tried in a fixed order.

1. `COUCHDB_URL=http://USER:PASSWORD@HOST:PORT`: a running server, used as it is;
2. `COUCHDB_LAUNCHER=/path/to/couchdb-local`: a single node it starts in a temporary folder;
3. Docker's `apache/couchdb:3` image, where a Docker daemon answers;
4. pouchdb-server, on which no replication runs.

`COUCHDB_SERVER` narrows the choice: `couchdb` refuses the fallback, `pouchdb` goes straight
to it, `auto` (the default) takes the first that is there.

Shares across servers need a second Apache CouchDB: `COUCHDB_SECOND_URL`, else one more
from the launcher or Docker.
"""

import os

from tests.servers.admin import AdminHttp
from tests.servers.couchdb import DockerCouchDB, LaunchedCouchDB, RunningCouchDB, tune_for_tests
from tests.servers.pouchdb import PouchServer

CHOICES = ("auto", "couchdb", "pouchdb")


def start_server(
    port: int | None = None, password: str | None = None, tune: bool = True
) -> AdminHttp:
    """Start (or take) the first server the settings allow; `tune` quickens its replicator.

    A server given by URL is never tuned: its settings are its owner's.
    """
    wanted = os.environ.get("COUCHDB_SERVER", "auto")
    if wanted not in CHOICES:
        raise RuntimeError(f"COUCHDB_SERVER must be one of {', '.join(CHOICES)}, not {wanted!r}")
    if wanted != "pouchdb":
        if os.environ.get("COUCHDB_URL"):
            return RunningCouchDB(os.environ["COUCHDB_URL"])
        server = None
        if os.environ.get("COUCHDB_LAUNCHER"):
            server = LaunchedCouchDB(os.environ["COUCHDB_LAUNCHER"], port, password).start()
        elif DockerCouchDB.available():
            server = DockerCouchDB(port, password).start()
        if server is not None:
            if tune:
                tune_for_tests(server)
            return server
        if wanted == "couchdb":
            raise RuntimeError(
                "COUCHDB_SERVER=couchdb, but no CouchDB was given: set COUCHDB_URL or"
                " COUCHDB_LAUNCHER, or run Docker"
            )
    return PouchServer(port, password).start()


def start_second_server() -> AdminHttp | None:
    """A second Apache CouchDB beside the first, tuned as it is; None if none can be had."""
    if os.environ.get("COUCHDB_SECOND_URL"):
        return RunningCouchDB(os.environ["COUCHDB_SECOND_URL"])
    server = None
    if os.environ.get("COUCHDB_LAUNCHER"):
        server = LaunchedCouchDB(os.environ["COUCHDB_LAUNCHER"]).start()
    elif DockerCouchDB.available():
        server = DockerCouchDB().start()
    if server is not None:
        tune_for_tests(server)
    return server
