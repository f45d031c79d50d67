"""A three-node Apache CouchDB cluster from the launcher, for the coordination tests.

Each node answers on its own port; `nodes` holds an admin client per node. A node can be
killed (SIGKILL: a crash, not a clean stop) and started again with its own configuration,
so it rejoins the cluster with its data.
"""

import os
import secrets
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.servers.admin import AdminHttp, free_port
from tests.servers.couchdb import TEST_SETTINGS, split_credentials, wait_up


class LaunchedCluster:
    """`LAUNCHER cluster DIR --ports A,B,C --admin U:P`, stopped with `LAUNCHER stop DIR`."""

    def __init__(self, launcher: str, size: int = 3):
        self.launcher = launcher
        self.ports = [free_port() for _ in range(size)]
        self.admin = ("admin", secrets.token_urlsafe(24))
        self.dir = Path(tempfile.mkdtemp(prefix="couchdb-cluster-"))
        self.nodes: list[AdminHttp] = []

    def start(self) -> "LaunchedCluster":
        ports = ",".join(map(str, self.ports))
        command = [self.launcher, "cluster", str(self.dir), "--ports", ports]
        started = subprocess.run(
            [*command, "--admin", ":".join(self.admin)], capture_output=True, text=True
        )
        if started.returncode != 0:
            raise RuntimeError(f"{self.launcher} cluster failed: {started.stderr.strip()[-500:]}")
        urls = (self.dir / "urls").read_text().split()
        self.nodes = [AdminHttp(*split_credentials(url)) for url in urls]
        for node in self.nodes:  # settings are per node
            for (section, key), value in TEST_SETTINGS.items():
                node.set_config(section, key, value)
        return self

    def stop(self) -> None:
        subprocess.run([self.launcher, "stop", str(self.dir)], capture_output=True, check=False)
        subprocess.run(["rm", "-rf", str(self.dir)], check=False)

    def node_of(self, url: str) -> int:
        """The index of the node whose Erlang name appears in a shard map entry."""
        port = int(url.rsplit("-", 1)[1].split("@", 1)[0])
        return self.ports.index(port)

    def kill(self, index: int) -> None:
        """Kill one node at once, as a crash would."""
        pid = int((self._node_dir(index) / "pid").read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)

    def revive(self, index: int) -> None:
        """Start a killed node again, with its own configuration and data."""
        node_dir = self._node_dir(index)
        subprocess.Popen(
            ["setsid", "sh", "-c", 'echo $$ > "$1"; exec ./bin/couchdb', "couchdb", "../pid"],
            cwd=node_dir / "couchdb",
            stdout=open(node_dir / "couchdb.log", "ab"),  # noqa: SIM115 (the child keeps it)
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "ERL_EPMD_ADDRESS": "127.0.0.1"},
        )
        wait_up(self.nodes[index].url)

    def _node_dir(self, index: int) -> Path:
        return self.dir / f"node-{self.ports[index]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
