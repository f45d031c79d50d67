"""Typed errors for CouchDB answers. None of them carries a URL with credentials."""

from service.config import DEFAULT_SERVER


class CouchError(Exception):
    """CouchDB answered with an error status."""

    def __init__(self, status: int, error: str, reason: str, operation: str):
        super().__init__(f"{operation}: {status} {error}: {reason}")
        self.status = status
        self.error = error
        self.reason = reason
        self.operation = operation


class NotFound(CouchError):
    """404: no such database or document."""


class DocumentConflict(CouchError):
    """409, or 412 on database creation: the revision or the name is taken."""


class PermissionDenied(CouchError):
    """401 or 403: the service credentials may not do this."""


class CouchUnavailable(Exception):
    """CouchDB could not be reached, timed out, or answered 5xx (`status`)."""

    def __init__(
        self, operation: str, cause: str, server: str = DEFAULT_SERVER, status: int | None = None
    ):
        super().__init__(f"{operation}: CouchDB server {server!r} unavailable: {cause}")
        self.operation = operation
        self.server = server
        self.status = status


def error_for(status: int, body: object, operation: str, server: str = DEFAULT_SERVER) -> Exception:
    """Map an error answer from `server` to the matching typed exception."""
    body = body if isinstance(body, dict) else {}
    error = str(body.get("error", "unknown"))
    reason = str(body.get("reason", ""))
    if status >= 500:
        return CouchUnavailable(operation, f"{status} {error}", server, status)
    kind = {404: NotFound, 409: DocumentConflict, 412: DocumentConflict}.get(status)
    if status in (401, 403):
        kind = PermissionDenied
    return (kind or CouchError)(status, error, reason, operation)
