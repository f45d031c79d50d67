"""Registering a user database under the Configuration UUID in its `0000-config`.

The first database to register a UUID holds it. Another database that claims it later is
recorded as a claim, for admins (`disputes`), and answered as a new registration would
be: UUIDs are not secret (every shared item carries one), so the answer must not say
whether one is taken. A claim holds only while its database's `0000-config` still names
the UUID; it is read again whenever the claim matters, and a void claim is dropped. While
a claim holds, a holder that shares already keeps sharing; one that does not yet must wait
for an admin to dismiss the claim or forget the wrong registration.
"""

import uuid

from service.config import DEFAULT_SERVER
from service.couch import NotFound
from service.sharing.core.errors import ConflictError, InvalidRequest, NotFoundError
from service.sharing.core.model import Database, Event, Status, actor_role, now_iso, place
from service.sharing.core.sites import Site, Sites
from service.sharing.core.store import StateStore, live_selector, pair_id, status_selector

CONFIG_DOC_ID = "0000-config"


class Registry:
    """Registers databases and resolves Configuration UUIDs to them. The same database
    name on two servers is two databases."""

    def __init__(self, sites: Sites, store: StateStore):
        self.sites = sites
        self.store = store

    def register(self, server: str, database: str, actor: str) -> tuple[Database, bool]:
        """Register `database` on `server` for `actor`; return it and whether it is new.

        A database has one registration: one under a UUID its config no longer holds is
        superseded, unless it takes part in a live share (409), so that no two live shares
        link the same two databases under other UUIDs. Each change is an event for admins.
        """
        config_uuid = self._read_config_uuid(self.sites.named(server), database)
        for old in self.store.databases_at(server, database):
            if old.config_uuid == config_uuid:
                continue
            if self.store.count_shares(old.config_uuid, live_selector()):
                raise ConflictError(
                    f"{database} takes part in a live share as {old.config_uuid}: end it"
                    " before registering the database under another UUID",
                    "database",
                )
            self.remove(old.config_uuid, actor)
        existing = self.store.get_database(config_uuid)
        if existing is None:
            wanted = Database(config_uuid, database, server, now_iso())
            stored = self.store.add_database(wanted, _event("register", config_uuid, actor))
            if stored == wanted:
                return stored, True
            existing = stored
        if (existing.server, existing.database) != (server, database):
            claim = _event("claim", config_uuid, actor)
            self.store.record_dispute(config_uuid, place(server, database), claim)
            return Database(config_uuid, database, server, now_iso()), True  # see above
        return existing, False

    def read_confirmed(
        self, field: str, database: Database, doc_ids: list[str]
    ) -> dict[str, dict | None]:
        """The docs with these ids in a party's database (None where missing), read in one
        request with its `0000-config`.

        Refuse (409) a party whose database is gone, or whose `0000-config` no longer holds
        the UUID it was registered under: a registration proves the config only as it was.
        """
        keys = [CONFIG_DOC_ID, *doc_ids]
        try:
            rows = self.site(database).couch.post(
                database.database, "_all_docs", json={"keys": keys}, params={"include_docs": "true"}
            )["rows"]
        except NotFound:
            detail = f"the database of {database.config_uuid} no longer exists"
            raise ConflictError(detail, field) from None
        docs = {row["key"]: row.get("doc") for row in rows}
        if (docs.pop(CONFIG_DOC_ID) or {}).get("uuid") != database.config_uuid:
            raise ConflictError(
                f"the database registered as {database.config_uuid} no longer holds it in"
                f" its {CONFIG_DOC_ID}; register it again",
                field,
            )
        return docs

    def get(self, config_uuid: str, field: str | None = None) -> Database:
        found = self.store.get_database(config_uuid)
        if found is None:
            raise self.unknown(config_uuid, field)
        return found

    @staticmethod
    def unknown(config_uuid: str, field: str | None = None) -> NotFoundError:
        return NotFoundError.unregistered(config_uuid, field)

    def parties(
        self, owner: str, recipient: str, undisputed: bool = False
    ) -> tuple[Database, Database]:
        """Both databases of a share, in one request; with `undisputed`, refuse (409) a UUID
        that another database still claims, unless its holder shares already."""
        if not undisputed:
            return self._both(owner, recipient, self.store.get_databases({owner, recipient}))
        found, disputes, _ = self.store.get_databases_undisputed({owner, recipient})
        return self._undisputed(owner, recipient, found, disputes)

    def new_pair(self, owner: str, recipient: str) -> tuple[Database, Database, dict | None]:
        """Both databases of a new share, undisputed (see `parties`), and the claim on
        their pair (None if none), in one request."""
        also = pair_id(owner, recipient)
        found, disputes, claim = self.store.get_databases_undisputed({owner, recipient}, also)
        return (*self._undisputed(owner, recipient, found, disputes), claim)

    def _undisputed(
        self, owner: str, recipient: str, found: dict[str, Database], disputes: dict[str, dict]
    ) -> tuple[Database, Database]:
        both = self._both(owner, recipient, found)
        for config_uuid, field in ((owner, "owner"), (recipient, "recipient")):
            dispute = disputes.get(config_uuid)
            active = status_selector(Status.ACTIVE)
            if (
                dispute
                and self._claims_hold(dispute)
                and not self.store.count_shares(config_uuid, active)
            ):
                raise ConflictError(
                    f"Configuration UUID {config_uuid} is disputed: another database claims it"
                    " too. An admin must dismiss the claim or remove the wrong registration",
                    field,
                )
        return both

    def _both(
        self, owner: str, recipient: str, found: dict[str, Database]
    ) -> tuple[Database, Database]:
        for config_uuid, field in ((owner, "owner"), (recipient, "recipient")):
            if config_uuid not in found:
                raise self.unknown(config_uuid, field)
        return found[owner], found[recipient]

    def _claims_hold(self, dispute: dict) -> bool:
        """Whether any claim on the UUID still holds: each claimant's `0000-config` is read
        again, and the void claims are dropped."""
        config_uuid, void = dispute["config_uuid"], []
        for claim in dispute["claims"]:
            server, _, database = claim.rpartition(":")
            try:
                site = self.sites.named(server or DEFAULT_SERVER)
                if self._read_config_uuid(site, database) == config_uuid:
                    continue
            except (NotFoundError, InvalidRequest):
                pass  # gone, no longer an Inventory database, or on a server no longer named
            void.append(claim)
        if void:
            self.store.drop_claims(config_uuid, void)
        return len(void) < len(dispute["claims"])

    def remove(self, config_uuid: str, actor: str) -> None:
        """Forget a registration; refused while the database takes part in a live share."""
        self.get(config_uuid)
        if self.store.count_shares(config_uuid, live_selector()):
            raise ConflictError(f"{config_uuid} takes part in a live share; revoke it first")
        self.store.remove_database(config_uuid, _event("forget", config_uuid, actor))
        self.store.clear_dispute(config_uuid)  # the next registration settles it

    def dismiss_claims(self, config_uuid: str, actor: str) -> None:
        """Drop every claim on a UUID; its registration stays. 404 if it has none."""
        event = _event("dismiss claims", config_uuid, actor)
        self.store.dismiss_dispute(config_uuid, event)

    def site(self, database: Database) -> Site:
        """The server that holds a registered database; 409 if it is no longer configured."""
        try:
            return self.sites[database.server]
        except KeyError:
            raise ConflictError(
                f"{database.config_uuid} is registered on the server {database.server!r},"
                " which the broker's settings no longer name"
            ) from None

    def exists(self, database: Database) -> bool:
        """Whether its server still has the database."""
        return _exists(self.site(database), database.database)

    def _read_config_uuid(self, site: Site, database: str) -> str:
        if not _exists(site, database):
            raise NotFoundError(f"database {database} does not exist", "database")
        try:
            config = site.couch.get(database, CONFIG_DOC_ID)
        except NotFound:
            raise InvalidRequest(f"{database} has no {CONFIG_DOC_ID} doc", "database") from None
        value = config.get("uuid")
        if not isinstance(value, str) or not _is_canonical_uuid(value):
            raise InvalidRequest(
                f"{CONFIG_DOC_ID} in {database} holds no valid Configuration UUID", "database"
            )
        return value


def _exists(site: Site, database: str) -> bool:
    try:
        site.couch.request("HEAD", (database,))
        return True
    except NotFound:
        return False


def _is_canonical_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _event(action: str, config_uuid: str, actor: str) -> Event:
    """An event about a registration, for admins' feed."""
    role = actor_role(action, actor)
    return Event("", action, actor, "ok", role=role, database=config_uuid)
