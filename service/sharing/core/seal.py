"""Seals on the broker's own records, so it never acts on one it did not write.

A share record decides what is provisioned, and a registration which database a
Configuration UUID names. Each is written with an HMAC-SHA256 over its deciding fields,
keyed with `BROKER_RECORD_KEY`, which lives in the broker's settings and never in CouchDB.
A record whose seal does not match (written by hand, by another user of an exposed state
database, or by another broker) is treated as absent, and reconcile reports it.
"""

import hashlib
import hmac
import json

SEALED_FIELDS = {
    "share": (
        "id",
        "owner",
        "recipient",
        "access",
        "collections",
        "rules",
        "status",
        "operation",
        "expires_at",
    ),
    "database": ("config_uuid", "database", "server"),
}


class Seal:
    """Signs and checks records with one key."""

    def __init__(self, key: str):
        self._key = key.encode()

    def signed(self, doc: dict) -> dict:
        return {**doc, "seal": self._mac(doc)}

    def valid(self, doc: dict) -> bool:
        seal = doc.get("seal")
        return isinstance(seal, str) and hmac.compare_digest(seal, self._mac(doc))

    def _mac(self, doc: dict) -> str:
        deciding = {name: doc.get(name) for name in SEALED_FIELDS[doc["type"]]}
        payload = json.dumps(deciding, sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()
