"""pouchdb-server: the fallback where no Apache CouchDB can be had.

It runs in memory on a free loopback port. Its replicator daemon watches a database nobody
writes to, since it crashes on selector replications; `_replicator` is then a plain
database, which is all the broker needs to write its docs. No document ever crosses on it.
"""

import json
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from tests.servers.admin import AdminHttp, free_port

PACKAGE = Path(__file__).resolve().parents[1] / "pouchdb"
BINARY = PACKAGE / "node_modules" / ".bin" / "pouchdb-server"


class PouchServer(AdminHttp):
    """One pouchdb-server process and its admin credentials."""

    kind = "pouchdb"
    replicates = False
    config_path = "_config"

    def __init__(self, port: int | None = None, password: str | None = None):
        self.port = port or free_port()
        super().__init__(f"http://127.0.0.1:{self.port}", ("admin", password or _password()))
        self._dir = tempfile.TemporaryDirectory(prefix="pouchdb-server-")
        self._process: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return BINARY.exists()

    def start(self) -> "PouchServer":
        if not self.available():
            raise RuntimeError(f"{BINARY} is missing: run `npm ci` in {PACKAGE}")
        workdir = Path(self._dir.name)
        config = {
            "admins": {self.admin[0]: self.admin[1]},
            "replicator": {"db": "pouchdb_server_replicator_unused"},
            "log": {"file": str(workdir / "log.txt")},
        }
        (workdir / "config.json").write_text(json.dumps(config))
        command = [str(BINARY), "-m", "-n", "-o", "127.0.0.1", "-p", str(self.port)]
        self._process = subprocess.Popen(
            [*command, "-c", str(workdir / "config.json")],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C reaches it through stop(), not twice
        )
        self._wait_until_up()
        self.put("_replicator")
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        self._dir.cleanup()

    def _wait_until_up(self, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"pouchdb-server exited with {self._process.returncode}")
            try:
                requests.get(self.url, timeout=1).raise_for_status()
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"pouchdb-server did not answer on {self.url} in {seconds}s")


def _password() -> str:
    return secrets.token_urlsafe(24)
