"""A phone or tablet of the Inventory app in the tests: PouchDB 8 in Node, syncing with its
user's own CouchDB database as the app's DBSyncManager does (`tests/devices/device.js`).

Each call is one run of the app, and the device's folder keeps its docs and checkpoints
between runs, so a test can open and close the app, keep a device offline, or leave its
push checkpoint behind its pull.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent / "devices"
RUN_SECONDS = 120  # a run that hangs fails the test instead of the whole suite


def harness_ready() -> None:
    """Skip the test where the harness is not installed, but fail in CI."""
    missing = None
    if shutil.which("node") is None:
        missing = "no Node.js"
    elif not (HARNESS / "node_modules" / "pouchdb").is_dir():
        missing = "tests/devices is not installed (scripts/setup --test installs it)"
    if missing and os.environ.get("COUCHDB_SERVER") == "couchdb":
        raise RuntimeError(missing)
    if missing:
        pytest.skip(missing)


class Device:
    """One device of one user: `filtered` for the app versions that sync through
    `_design/app_sync_v0`, unfiltered (the older ones) otherwise."""

    def __init__(self, folder: Path, url: str, user: tuple[str, str], filtered: bool = False):
        self.folder = folder
        self.remote = {"url": url, "username": user[0], "password": user[1], "filtered": filtered}

    def sync(self) -> dict:
        """The app opened: log in, the start-up sync, and closed again. The answer says
        whether the app counts it complete, and what it was told (`denied`, `errors`)."""
        return self._run("sync", **self.remote)

    def live(self, until: dict, timeout: float = 20) -> dict:
        """The app opened and left open: the start-up sync, then live sync until `until`
        holds on the device (`{"id", "gone": True}` or `{"id", "path", "equals"}`)."""
        return self._run("live", **self.remote, until=until, timeout=timeout)

    def pull(self) -> dict:
        """A run that ended before its push: the push checkpoint now lags the pull."""
        return self._run("pull", **self.remote)

    def docs(self) -> dict[str, dict]:
        """The device's live docs by id, with `_conflicts`."""
        return {doc["_id"]: doc for doc in self._run("docs")["docs"]}

    def edit(self, doc_id: str, **data) -> str:
        """Save a change of the doc's `data`, as the app does; the new revision."""
        return self._run("edit", id=doc_id, data=data)["rev"]

    def remove(self, doc_id: str) -> str:
        return self._run("remove", id=doc_id)["rev"]

    def _run(self, command: str, **args) -> dict:
        done = subprocess.run(
            [
                "node",
                str(HARNESS / "device.js"),
                command,
                json.dumps({"dir": str(self.folder), **args}),
            ],
            capture_output=True,
            text=True,
            timeout=RUN_SECONDS,
            check=False,
        )
        lines = done.stdout.strip().splitlines()
        answer = json.loads(lines[-1]) if lines else {}
        if done.returncode != 0 or "failed" in answer:
            raise AssertionError(f"device {command} failed: {answer or done.stderr[-2000:]}")
        return answer
