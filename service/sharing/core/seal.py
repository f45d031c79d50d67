"""Seals on the broker's own records, so it never acts on one it did not write, or on one
brought back from an earlier state.

A share record decides what is provisioned, and a registration which database a
Configuration UUID names. Each is written with an HMAC-SHA256 over its deciding fields and
the generation of the revision it is written as (the `N` of `N-hash`), keyed with
`BROKER_RECORD_KEY`, which lives in the broker's settings and never in CouchDB.

A record whose seal does not match (written by hand, by another user of an exposed state
database, or by another broker) is treated as absent, and reconcile reports it. So is an
earlier sealed state written back: CouchDB numbers its revision past the sealed one, and
only CouchDB numbers revisions. (Grafting it back at its own number takes deleting the
later branch; the store and reconcile look for that, see `revisions.replayed`.)
"""

import hashlib
import hmac
import json

from service.sharing.core.revisions import generation

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
    # Where events go: a forged endpoint would send every event to its writer.
    "webhook": ("id", "url", "kinds"),
}
SEALED_TYPES = tuple(SEALED_FIELDS)


class Seal:
    """Signs and checks records with one key."""

    def __init__(self, key: str):
        self._key = key.encode()

    def signed(self, doc: dict) -> dict:
        """`doc` sealed for the revision it becomes when written over its `_rev` (a new
        doc, without `_rev`, becomes revision 1)."""
        return {**doc, "seal": self._mac(doc, generation(doc.get("_rev")) + 1)}

    def valid(self, doc: dict) -> bool:
        """Whether the broker wrote `doc` as the very revision it is read as."""
        seal, rev = doc.get("seal"), doc.get("_rev")
        return (
            isinstance(seal, str)
            and bool(rev)
            and hmac.compare_digest(seal, self._mac(doc, generation(rev)))
        )

    def valid_unbound(self, doc: dict) -> bool:
        """Whether `doc` carries a seal of the broker's earlier form, which bound no
        revision; only for resealing such records once, on upgrade."""
        seal = doc.get("seal")
        return isinstance(seal, str) and hmac.compare_digest(seal, self._mac(doc, None))

    def _mac(self, doc: dict, generation_: int | None) -> str:
        deciding = {name: doc.get(name) for name in SEALED_FIELDS[doc["type"]]}
        if generation_ is not None:
            deciding["_generation"] = generation_
        payload = json.dumps(deciding, sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()
