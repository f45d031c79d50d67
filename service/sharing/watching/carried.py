"""Whether a run would carry anything: asked before each on-change run, to spare the rest.

A write that crosses a read-write share makes two runs due: its own replication's, and the
way back's, since the target moved too. The way back finds nothing new (the target's
changes are the docs just carried), but a run costs CouchDB as much as one that carries:
a job to start, checkpoints to read and write. So after a run the broker keeps where it
left the source (`source_last_seq`). Before the next, it reads the source's changes since
then through the run's own selector (`_changes?filter=_selector`, style `all_docs`, as the
replicator reads them) and asks the target which of those revisions it lacks
(`_revs_diff`). If it lacks none, the run is spared, and the next question starts from
where this one ended; CouchDB's checkpoint stays where the last run left it, so a later run
reads those changes again and finds them there.

The position is kept with the run's source, target and selector: a changed scope is
another replication (another checkpoint), and is run. After a restart nothing is known,
and each replication runs once.

Only between single-node servers. A cluster answers `_changes` from one copy of each
shard, which may not have a write the others acknowledged; the question would find nothing
new, move its position past the write, and strand it until the database moves again. (Seen
on the launcher's 3-node cluster: 1 write of 600 had not crossed 180 s after the load.)
"""

import json
import threading
from collections.abc import Mapping

from service.couch import CouchClient, CouchError, CouchUnavailable
from service.sharing.core.sites import cluster_nodes
from service.sharing.watching.replications import Key, Replication

LIMIT = 100  # changes read at most; more than that and a run is cheaper than asking


def fingerprint(doc: dict) -> str:
    """What names a replication's checkpoint: its ends, as URLs, and its selector."""
    ends = {end: (doc.get(end) or {}).get("url") for end in ("source", "target")}
    return json.dumps({**ends, "selector": doc.get("selector")}, sort_keys=True)


class Carried:
    """Where each replication's last run, or question, left its source."""

    def __init__(self, couches: Mapping[str, CouchClient]):
        """`couches`: a client for each server, by name; the runs' own, so that as many
        questions as runs may be asked at once."""
        self.couches = couches
        self._left: dict[Key, tuple[str, object]] = {}  # key -> (fingerprint, source seq)
        self._one_node: dict[str, bool] = {}  # by server, once known
        self._lock = threading.Lock()

    def ran(self, key: Key, doc: dict, source_seq: object) -> None:
        """A run of `doc` went through, and left its source at `source_seq`."""
        with self._lock:
            if source_seq is None:
                self._left.pop(key, None)
            else:
                self._left[key] = (fingerprint(doc), source_seq)

    def forget(self, key: Key) -> None:
        with self._lock:
            self._left.pop(key, None)

    def nothing_new(self, replication: Replication, doc: dict) -> bool:
        """Whether the target holds every revision the run would carry; False when unsure."""
        with self._lock:
            left = self._left.get(replication.key)
        if left is None or left[0] != fingerprint(doc):
            return False
        try:
            ends = {replication.source[0], replication.target[0]}
            if not all(self._on_one_node(server) for server in ends):
                return False
            params = {"filter": "_selector", "style": "all_docs", "since": left[1], "limit": LIMIT}
            changes = self.couches[replication.source[0]].post(
                replication.source[1], "_changes", json={"selector": doc["selector"]}, params=params
            )
            if len(changes["results"]) >= LIMIT:
                return False
            revisions = {
                row["id"]: [change["rev"] for change in row["changes"]]
                for row in changes["results"]
            }
            if revisions:
                target = self.couches[replication.target[0]]
                if target.post(replication.target[1], "_revs_diff", json=revisions):
                    return False
        except (CouchError, CouchUnavailable, KeyError):
            return False  # the run finds out, and says why
        with self._lock:
            self._left[replication.key] = (left[0], changes["last_seq"])
        return True

    def _on_one_node(self, server: str) -> bool:
        """Whether `server` is a single node, as `_membership` says (asked once)."""
        if server not in self._one_node:
            self._one_node[server] = len(cluster_nodes(self.couches[server])) <= 1
        return self._one_node[server]
