"""Who may do what. Admins may do everything; a user acts for the databases they can read."""

from service.sharing.errors import ForbiddenError, NotFoundError
from service.sharing.identity import Caller, Identity
from service.sharing.model import Database, Share
from service.sharing.registry import Registry


class Policy:
    """Answers, for one caller, which databases and shares they act for."""

    def __init__(self, identity: Identity, registry: Registry):
        self.identity = identity
        self.registry = registry

    def require_database(self, caller: Caller, database: str, field: str) -> None:
        """A user may only act for a database they can read."""
        if not self.identity.can_read(caller, database):
            raise ForbiddenError(f"you cannot read the database {database}", field)

    def require_registered(self, caller: Caller, config_uuid: str, field: str) -> Database:
        """The registration, if the caller may act for it. One they may not is answered
        exactly as an unknown UUID, so no one learns which UUIDs are registered, or as what.
        """
        found = self.registry.get(config_uuid, field)
        if not self.identity.can_read(caller, found.database):
            raise self.registry.unknown(config_uuid, field)
        return found

    def roles(self, caller: Caller, share: Share) -> set[str]:
        """The caller's parts in a share: `owner`, `recipient`, both or none."""
        if caller.is_admin:
            return {"owner", "recipient"}
        roles = set()
        for role, config_uuid in (("owner", share.owner), ("recipient", share.recipient)):
            database = self.registry.store.get_database(config_uuid)
            if database and self.identity.can_read(caller, database.database):
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
