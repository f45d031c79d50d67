"""Starts and stops pouchdb-server, the CouchDB-compatible peer for tests and local runs.

It runs in memory on a free loopback port. Its replicator daemon watches a database nobody
writes to, since it crashes on selector replications; `_replicator` is then a plain
database, which is all the broker needs to write its docs.
"""

import json
import secrets
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
BINARY = HERE / "node_modules" / ".bin" / "pouchdb-server"
ADMIN_USER = "admin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PouchServer:
    """One pouchdb-server process and its admin credentials."""

    def __init__(self, port: int | None = None, password: str | None = None):
        self.port = port or free_port()
        self.admin = (ADMIN_USER, password or secrets.token_urlsafe(24))
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="pouchdb-server-")
        self._process: subprocess.Popen | None = None

    def start(self) -> "PouchServer":
        if not BINARY.exists():
            raise RuntimeError(f"{BINARY} is missing: run `npm ci` in {HERE}")
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

    # Admin helpers over HTTP

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.url}/{path}", auth=self.admin, timeout=10, **kwargs)

    def put(self, path: str, body: object = None) -> dict:
        response = self.request("PUT", path, json=body)
        response.raise_for_status()
        return response.json()

    def get(self, path: str, **params) -> dict:
        response = self.request("GET", path, params=params)
        response.raise_for_status()
        return response.json()

    def create_db(self, name: str, docs: list[dict]) -> None:
        self.put(name)
        if docs:
            response = self.request("POST", f"{name}/_bulk_docs", json={"docs": docs})
            response.raise_for_status()
            failed = [r for r in response.json() if "error" in r]
            if failed:
                raise RuntimeError(f"loading {name} failed: {failed}")

    def add_member(self, db: str, name: str, password: str | None = None) -> None:
        """Make `name` the one member of `db`, creating the user if a password is given."""
        if password is not None:
            user = {"name": name, "password": password, "roles": [], "type": "user"}
            self.put(f"_users/org.couchdb.user:{name}", user)
        members = {"names": [name], "roles": []}
        self.put(f"{db}/_security", {"admins": {"names": [], "roles": []}, "members": members})

    def all_docs(self, db: str) -> dict[str, dict]:
        rows = self.get(f"{db}/_all_docs", include_docs="true")["rows"]
        return {row["id"]: row["doc"] for row in rows}
