"""The CouchDB servers the broker administers, each with what acts on its databases.

A share's two databases may live on different servers. Every database is known by its
server's name and its own (see `model.place`).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.config import DEFAULT_SERVER
from service.couch import CouchClient, CouchError
from service.sharing.core.errors import InvalidRequest
from service.sharing.core.identity import Identity

if TYPE_CHECKING:  # the placing package's; the wiring builds it
    from service.sharing.placing.access import DatabaseAccess


@dataclass(frozen=True)
class Site:
    """One server: the broker's client for it, how replicators reach it, what makes its
    databases ready for share users, and its users' identity."""

    name: str
    couch: CouchClient
    replication_url: str
    access: "DatabaseAccess"
    identity: Identity


class Sites:
    """Every server by name; `default` holds the broker's state."""

    def __init__(self, sites: list[Site]):
        self._sites = {site.name: site for site in sites}
        self.default = self._sites[DEFAULT_SERVER]

    def __getitem__(self, name: str) -> Site:
        return self._sites[name]

    def __iter__(self) -> Iterator[Site]:
        return iter(self._sites.values())

    def __contains__(self, name: str) -> bool:
        return name in self._sites

    def named(self, name: str, field: str = "server") -> Site:
        """The server called `name`, or 422 naming `field` (without listing the others)."""
        if name not in self._sites:
            raise InvalidRequest(f"no server is named {name!r}", field)
        return self._sites[name]


def cluster_nodes(couch: CouchClient) -> list[str]:
    """The nodes of the server's cluster (one on a single node); none without clustering
    (pouchdb-server)."""
    try:
        return couch.get("_membership").get("cluster_nodes") or []
    except CouchError:
        return []
