"""Who may do what. Admins may do everything; a user acts for the databases they can read
on their own server."""

from service.sharing.core.errors import ConflictError, ForbiddenError, NotFoundError
from service.sharing.core.identity import Caller
from service.sharing.core.model import Database, Share, Status
from service.sharing.core.registry import Registry
from service.sharing.core.sites import Sites
from service.sharing.core.store import live_selector, status_selector


class Policy:
    """Answers, for one caller, which databases and shares they act for."""

    def __init__(
        self,
        sites: Sites,
        registry: Registry,
        max_pending_invitations: int = 20,
        max_live_shares: int = 200,
    ):
        self.sites = sites
        self.registry = registry
        self.max_pending_invitations = max_pending_invitations
        self.max_live_shares = max_live_shares

    def require_room(self, caller: Caller, owner: str) -> None:
        """A user's database may hold at most so many pending invitations it sent, and so
        many live shares; each bound answered 409, naming it. Admins are not bounded."""
        if caller.is_admin:
            return
        store = self.registry.store
        waiting = status_selector(Status.PENDING)
        pending = store.count_shares(owner, waiting, "owner", up_to=self.max_pending_invitations)
        if pending >= self.max_pending_invitations:
            raise ConflictError(
                f"{owner} has {pending} invitations waiting, the most"
                " BROKER_MAX_PENDING_INVITATIONS allows; withdraw one first",
                "owner",
            )
        live = store.count_shares(owner, live_selector(), up_to=self.max_live_shares)
        if live >= self.max_live_shares:
            raise ConflictError(
                f"{owner} takes part in {live} live shares, the most BROKER_MAX_LIVE_SHARES"
                " allows; end one first",
                "owner",
            )

    def require_room_to_accept(self, caller: Caller, recipient: str) -> None:
        """Accepting keeps the recipient within its live shares (the invitation counts
        already); 409 naming the bound if not. Admins are not bounded."""
        if caller.is_admin:
            return
        most = self.max_live_shares
        live = self.registry.store.count_shares(recipient, live_selector(), up_to=most + 1)
        if live > most:
            raise ConflictError(
                f"{recipient} takes part in {live - 1} live shares, the most"
                " BROKER_MAX_LIVE_SHARES allows; end one first",
                "recipient",
            )

    def require_database(self, caller: Caller, server: str, database: str, field: str) -> None:
        """A user may only act for a database they can read on their own server."""
        site = self.sites.named(server)
        if caller.is_admin:
            return
        if caller.server != server or not site.identity.can_read(caller, database):
            raise ForbiddenError(
                f"you cannot read the database {database} on {server}, or it does not exist",
                field,
            )

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
