"""Admin helpers over HTTP, the same for Apache CouchDB and pouchdb-server."""

import socket
from urllib.parse import quote

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AdminHttp:
    """A server's URL (without credentials) and its admin: what tests and the dev stack need.

    `kind` is `couchdb` or `pouchdb`; `replicates` says whether a `_replicator` doc really
    moves documents there.
    """

    kind = "couchdb"
    replicates = True
    config_path = "_node/_local/_config"

    def __init__(self, url: str, admin: tuple[str, str]):
        self.url = url.rstrip("/")
        self.admin = admin

    @property
    def version(self) -> str:
        return str(self.get("").get("version", "?"))

    def replicator_log(self, lines: int = 20) -> str:
        """The last lines the server logged about replication, where the tests can read its
        log: none here."""
        return ""

    def describe(self) -> str:
        """One line: which server this is, its version and where."""
        name = "Apache CouchDB" if self.kind == "couchdb" else "pouchdb-server"
        line = f"{name} {self.version} at {self.url}"
        if not self.replicates:
            line += " (no replication runs on it: documents never cross)"
        return line

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        url = f"{self.url}/{path}"
        return requests.request(method, url, auth=self.admin, headers=headers, timeout=30, **kwargs)

    def put(self, path: str, body: object = None) -> dict:
        response = self.request("PUT", path, json=body)
        response.raise_for_status()
        return response.json()

    def get(self, path: str, **params) -> dict:
        response = self.request("GET", path, params=params)
        response.raise_for_status()
        return response.json()

    def delete(self, path: str, **params) -> None:
        """Delete a database, or a doc at a revision; one that is gone already is fine."""
        response = self.request("DELETE", path, params=params)
        if response.status_code != 404:
            response.raise_for_status()

    def delete_doc(self, db: str, doc_id: str) -> None:
        """Delete a doc's current revision, if it has one; read it again if CouchDB changed
        it meanwhile (it re-hashes a user's password after the first login)."""
        quoted = quote(doc_id, safe=":")
        for _ in range(3):
            found = self.request("GET", f"{db}/{quoted}")  # pouchdb-server's HEAD has no ETag
            if found.status_code == 404:
                return
            found.raise_for_status()
            rev = found.json()["_rev"]
            response = self.request("DELETE", f"{db}/{quoted}", params={"rev": rev})
            if response.status_code != 409:
                if response.status_code != 404:
                    response.raise_for_status()
                return
        raise AssertionError(f"{db}/{doc_id} kept changing")

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

    def set_config(self, section: str, key: str, value: str) -> None:
        """Change one server setting at run time."""
        self.put(f"{self.config_path}/{section}/{key}", value)

    def start(self) -> "AdminHttp":
        return self

    def stop(self) -> None:
        """Stop what was started for this server; a server given by URL keeps running."""
