"""Apache CouchDB: a running server given by URL, one a launcher starts, or one in Docker."""

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from urllib.parse import urlsplit, urlunsplit

import requests

from tests.servers.admin import AdminHttp, free_port

SYSTEM_DBS = ("_users", "_replicator", "_global_changes")
DOCKER_IMAGE = "apache/couchdb:3"
LOG_TAIL_BYTES = 4_000_000  # the last seconds of a busy test server's log

# Quicker replication for tests: jobs start at once, the scheduler looks every second, and
# checkpoints are written often. Only on a server the tests started themselves.
#
# Replications authenticate with Basic on each request instead of a `_session` cookie: with
# hundreds of jobs started and stopped a minute, the replicator's `POST /_session` often
# takes a pooled connection the server has closed (`sel_conn_closed`). That request is not
# retried: the job crashes and CouchDB waits at least 30 s before the next try. Other
# requests are retried, and the password cache keeps Basic cheap.
#
# New users' passwords are hashed with 1,000 PBKDF2 rounds instead of 600,000 (about 150 ms
# of CouchDB's CPU each): the suite makes thousands of users. The bench keeps the default.
TEST_SETTINGS = {
    ("replicator", "startup_jitter"): "0",
    ("replicator", "interval"): "1000",
    ("replicator", "checkpoint_interval"): "1000",
    ("replicator", "auth_plugins"): "couch_replicator_auth_noop",
    ("chttpd_auth", "iterations"): "1000",
}


def split_credentials(url: str) -> tuple[str, tuple[str, str]]:
    """`http://user:pw@host:port` as the URL without credentials, and (user, pw)."""
    parts = urlsplit(url)
    if not parts.username or parts.password is None:
        raise ValueError(
            "COUCHDB_URL needs the admin's credentials: http://USER:PASSWORD@HOST:PORT"
        )
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    bare = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return bare, (parts.username, parts.password)


class RunningCouchDB(AdminHttp):
    """A server someone else runs: used as it is, never stopped, its settings left alone."""

    def __init__(self, url: str):
        super().__init__(*split_credentials(url))


class LaunchedCouchDB(AdminHttp):
    """A single node started by a launcher (`LAUNCHER start DIR --port N --admin U:P`)."""

    def __init__(self, launcher: str, port: int | None = None, password: str | None = None):
        self.launcher = launcher
        self.port = port or free_port()
        super().__init__(f"http://127.0.0.1:{self.port}", ("admin", password or _password()))
        self._dir = tempfile.mkdtemp(prefix="couchdb-")

    def start(self) -> "LaunchedCouchDB":
        admin = ":".join(self.admin)
        command = [self.launcher, "start", self._dir, "--port", str(self.port), "--admin", admin]
        started = subprocess.run(command, capture_output=True, text=True, check=False)
        if started.returncode != 0:
            self._remove()
            raise RuntimeError(f"{self.launcher} failed: {started.stderr.strip()[-500:]}")
        return self

    def stop(self) -> None:
        subprocess.run([self.launcher, "stop", self._dir], capture_output=True, check=False)
        self._remove()

    def replicator_log(self, lines: int = 20) -> str:
        """The last lines its replicator and scheduler logged: what a replication that never
        came was doing."""
        try:
            with open(os.path.join(self._dir, "couchdb.log"), "rb") as log:
                log.seek(max(0, os.path.getsize(log.name) - LOG_TAIL_BYTES))
                tail = log.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        kept = ("[info]", "[warning]", "[error]")  # not requests, not query statistics
        found = [line for line in tail if "eplicat" in line and line.startswith(kept)]
        return "\n".join(found[-lines:])

    def _remove(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


class DockerCouchDB(AdminHttp):
    """The official image in a throw-away container on a loopback port."""

    def __init__(self, port: int | None = None, password: str | None = None):
        self.port = port or free_port()
        super().__init__(f"http://127.0.0.1:{self.port}", ("admin", password or _password()))
        self.container = f"sharing-broker-couchdb-{self.port}"

    @staticmethod
    def available() -> bool:
        if not shutil.which("docker"):
            return False
        info = subprocess.run(["docker", "info"], capture_output=True, check=False)
        return info.returncode == 0

    def start(self) -> "DockerCouchDB":
        user, password = self.admin
        publish = ["-p", f"127.0.0.1:{self.port}:5984"]
        env = ["-e", f"COUCHDB_USER={user}", "-e", f"COUCHDB_PASSWORD={password}"]
        run = ["docker", "run", "-d", "--rm", "--name", self.container]
        subprocess.run([*run, *publish, *env, DOCKER_IMAGE], capture_output=True, check=True)
        wait_up(self.url)
        for db in SYSTEM_DBS:
            self.request("PUT", db)
        return self

    def stop(self) -> None:
        subprocess.run(["docker", "stop", self.container], capture_output=True, check=False)


def wait_up(url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/_up", timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"CouchDB did not answer on {url} in {seconds:.0f}s")


def tune_for_tests(server: AdminHttp) -> None:
    for (section, key), value in TEST_SETTINGS.items():
        server.set_config(section, key, value)


def _password() -> str:
    return secrets.token_urlsafe(24)
