"""Who may do what. Admins may do everything; a user acts for the databases they can read
on their own server."""

from service.sharing.core.errors import ForbiddenError, NotFoundError
from service.sharing.core.identity import Caller
from service.sharing.core.model import Database, Share
from service.sharing.core.registry import Registry
from service.sharing.core.sites import Sites


class Policy:
    """Answers, for one caller, which databases and shares they act for."""

    def __init__(self, sites: Sites, registry: Registry):
        self.sites = sites
        self.registry = registry

    def require_database(self, caller: Caller, server: str, database: str, field: str) -> None:
        """A user may only act for a database they can read on their own server."""
        site = self.sites.named(server)
        if caller.is_admin:
            return
        if caller.server != server or not site.identity.can_read(caller, database):
            raise ForbiddenError(f"you cannot read the database {database} on {server}", field)

    def can_read(self, caller: Caller, database: Database) -> bool:
        """Whether the caller may act for a registered database."""
        if caller.is_admin:
            return True
        if caller.server != database.server or database.server not in self.sites:
            return False
        return self.sites[database.server].identity.can_read(caller, database.database)

    def require_registered(self, caller: Caller, config_uuid: str, field: str) -> Database:
        """The registration, if the caller may act for it. One they may not is answered
        exactly as an unknown UUID, so no one learns which UUIDs are registered, or as what.
        """
        found = self.registry.get(config_uuid, field)
        if not self.can_read(caller, found):
            raise self.registry.unknown(config_uuid, field)
        return found

    def roles(self, caller: Caller, share: Share) -> set[str]:
        """The caller's parts in a share: `owner`, `recipient`, both or none."""
        if caller.is_admin:
            return {"owner", "recipient"}
        roles = set()
        for role, config_uuid in (("owner", share.owner), ("recipient", share.recipient)):
            database = self.registry.store.get_database(config_uuid)
            if database and self.can_read(caller, database):
                roles.add(role)
        return roles

    def require_party(self, caller: Caller, share: Share, *allowed: str) -> set[str]:
        """The caller's roles; a stranger is told the share does not exist."""
        roles = self.roles(caller, share)
        if not roles:
            raise NotFoundError(f"no share {share.id}")
        if allowed and not roles & set(allowed):
            raise ForbiddenError(f"only the {' or the '.join(allowed)} may do this")
        return roles
