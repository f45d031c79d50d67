"""The broker as it is served: `sharing-broker serve` (gunicorn) in a subprocess, for the
tests that need the real serving path and for the bench."""

import os
import subprocess
import sys
import tempfile
import time

import requests

from tests.servers.admin import AdminHttp, free_port


class BrokerProcess:
    """`sharing-broker serve` (2 workers unless `env` says otherwise) on a free port, ready
    when returned (within `ready_seconds`), against `couch`, with `state_db` and
    `admin_tokens`.

    Its output goes to files (a pipe nobody reads could fill and block it): `output()`.
    """

    def __init__(
        self,
        couch: AdminHttp,
        state_db: str,
        admin_tokens: str,
        ready_seconds: float = 30.0,
        **env: str,
    ):
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "BROKER_COUCHDB_URL": couch.url,
            "BROKER_COUCHDB_USER": couch.admin[0],
            "BROKER_COUCHDB_PASSWORD": couch.admin[1],
            "BROKER_ADMIN_TOKENS": admin_tokens,
            "BROKER_STATE_DB": state_db,
            "BROKER_BIND": self.url.removeprefix("http://"),
            "BROKER_WORKERS": "2",
            "BROKER_OPERATION_GRACE": "0",  # tests reconcile what they stopped, at once
            **env,
        }
        # Open for the process's whole life, read by output(); removed when garbage-collected.
        self._out = tempfile.TemporaryFile()  # noqa: SIM115
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"],
            env=env,
            stdout=self._out,
            stderr=self._err,
        )
        deadline = time.monotonic() + ready_seconds
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/readyz", timeout=3).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):  # not up, or slow to start
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("the broker did not become ready")

    def stop(self) -> None:
        """SIGTERM, as a rolling deploy sends it; gunicorn stops gracefully."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def output(self) -> tuple[str, str]:
        """What it wrote to stdout and stderr so far."""
        texts = []
        for file in (self._out, self._err):
            file.seek(0)
            texts.append(file.read().decode())
        return texts[0], texts[1]
