"""Domain errors. The API layer turns each into a problem response."""


class SharingError(Exception):
    """Base of every domain error; `field` names the input at fault, if any."""

    status = 400

    def __init__(self, detail: str, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field


class NotFoundError(SharingError):
    """A Configuration UUID, database or share that does not exist."""

    status = 404

    @classmethod
    def unregistered(cls, config_uuid: str, field: str | None = None) -> "NotFoundError":
        """No registration of this UUID that the caller may act for. A UUID registered to
        someone else gets this same answer, so it says so: no one learns whose it is."""
        detail = f"no database is registered as {config_uuid}, or none that you may act for"
        return cls(detail, field=field)


class ForbiddenError(SharingError):
    """The caller may not act for this database or do this to this share."""

    status = 403


class InvalidRequest(SharingError):
    """Well-formed input that the domain refuses."""

    status = 422


class ConflictError(SharingError):
    """The request clashes with the current state."""

    status = 409


class PreconditionFailed(SharingError):
    """The caller's ETag no longer matches the record."""

    status = 412
