"""The floor: the CouchDB writes the manual page makes by hand, with no broker in between."""

import requests

from bench.stack import collection_of
from service.sharing.core.model import Access, Direction
from service.sharing.crossing.selectors import Scope, share_selector


class Floor:
    """Plain requests against CouchDB, as someone following the manual page would send."""

    def __init__(self, couch_url: str, admin: tuple[str, str]):
        self.url = couch_url
        self.admin = admin
        self.session = requests.Session()
        self.session.auth = admin

    def _db(self, name: str) -> dict:
        basic = {"username": self.admin[0], "password": self.admin[1]}
        return {"url": f"{self.url}/{name}", "auth": {"basic": basic}}

    def create(self, key: str, owner: tuple[str, str], recipient: tuple[str, str]) -> None:
        """Two replicator docs and the db_sharing doc: read-write sharing by hand."""
        (owner_db, owner_uuid), (recipient_db, recipient_uuid) = owner, recipient
        for direction, source, target in (
            (Direction.OWNER_TO_RECIPIENT, owner_db, recipient_db),
            (Direction.RECIPIENT_TO_OWNER, recipient_db, owner_db),
        ):
            selector = share_selector(
                owner_uuid,
                recipient_uuid,
                Access.READ_WRITE,
                Scope([collection_of(owner_uuid)]),
                direction,
            )
            doc = {
                "source": self._db(source),
                "target": self._db(target),
                "continuous": True,
                "selector": selector,
            }
            self._ok(self.session.put(f"{self.url}/_replicator/floor-{key}-{direction}", json=doc))
        db_sharing = {"type": "db_sharing", "data": {"permissions": ["read", "write"]}}
        doc_id = f"db_sharing-{owner_uuid}--{recipient_uuid}"
        self._ok(self.session.put(f"{self.url}/{owner_db}/{doc_id}", json=db_sharing))

    def revoke(self, key: str, owner: tuple[str, str], recipient: tuple[str, str]) -> None:
        """Delete db_sharing, then both replicator docs, each read first for its _rev."""
        doc_id = f"db_sharing-{owner[1]}--{recipient[1]}"
        paths = [f"{owner[0]}/{doc_id}"] + [
            f"_replicator/floor-{key}-{direction}" for direction in Direction
        ]
        for path in paths:
            rev = self._ok(self.session.get(f"{self.url}/{path}")).json()["_rev"]
            self._ok(self.session.delete(f"{self.url}/{path}", params={"rev": rev}))

    def status(self, key: str) -> None:
        """What the scheduler says of both replications (404 on pouchdb-server)."""
        for direction in Direction:
            self.session.get(f"{self.url}/_scheduler/docs/_replicator/floor-{key}-{direction}")

    def list_status(self, keys: list[str]) -> None:
        """A page of replicator docs in one request."""
        ids = [f"floor-{key}-{direction}" for key in keys for direction in Direction]
        body = {"keys": ids}
        self._ok(self.session.post(f"{self.url}/_replicator/_all_docs", json=body))

    @staticmethod
    def _ok(response: requests.Response) -> requests.Response:
        response.raise_for_status()
        return response
