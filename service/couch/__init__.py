"""A small gateway over requests to CouchDB: timeouts, retries and typed errors."""

from service.couch.client import CouchClient
from service.couch.errors import (
    CouchError,
    CouchUnavailable,
    DocumentConflict,
    NotFound,
    PermissionDenied,
)

__all__ = [
    "CouchClient",
    "CouchError",
    "CouchUnavailable",
    "DocumentConflict",
    "NotFound",
    "PermissionDenied",
]
