"""The write guard: a `validate_doc_update` of the broker's own in every shared database.

For a share user it lets through only writes inside that share's scope; for anyone else it
does nothing, so the database's own users and admins are never blocked. One design doc per
database holds the scopes of every share that touches it.
"""

import json

from service.couch import CouchClient, DocumentConflict, NotFound
from service.sharing.credentials import DatabaseLocks
from service.sharing.selectors import SHARED_PREFIXES

GUARD_ID = "_design/sharing-broker-guard"

# The scope of a share user in one database: `read_only` refuses every write; otherwise a
# doc must be of a shared kind, carry its kind's `_id` prefix and belong to a shared
# collection (`collections` null: any), or be the share's own `db_sharing` doc.
VALIDATE = """function (newDoc, oldDoc, userCtx, secObj) {
  var scopes = %(scopes)s;
  var prefixes = %(prefixes)s;
  var scope = scopes[userCtx.name];
  if (!scope) { return; }
  function deny(why) { throw({forbidden: 'sharing-broker guard: ' + why}); }
  if (scope.read_only) { deny('this share may not write here'); }
  function has(id) { return scope.collections === null || scope.collections.indexOf(id) !== -1; }
  function inScope(doc) {
    if (scope.db_sharing && doc._id === scope.db_sharing) { return true; }
    var prefix = prefixes[doc.type];
    if (!prefix || doc._id.indexOf(prefix) !== 0) { return false; }
    var data = doc.data || {};
    if (doc.type === 'collection') { return has(doc._id.substring(prefix.length)); }
    if (doc.type === 'item') { return has(data.collection_id); }
    if (doc.type === 'item_image') { return has(data._item_collection_id); }
    var ids = data._item_collection_ids || [];
    for (var i = 0; i < ids.length; i++) { if (has(ids[i])) { return true; } }
    return false;
  }
  function idInScope(id) {
    if (scope.db_sharing && id === scope.db_sharing) { return true; }
    for (var kind in prefixes) { if (id.indexOf(prefixes[kind]) === 0) { return true; } }
    return false;
  }
  if (newDoc._deleted) {
    if (oldDoc && !oldDoc._deleted) {
      if (!inScope(oldDoc)) { deny('deleting a doc outside the share'); }
    } else if (!idInScope(newDoc._id)) { deny('a tombstone outside the share'); }
    return;
  }
  if (!inScope(newDoc)) { deny('a doc outside the share'); }
  if (oldDoc && !oldDoc._deleted && !inScope(oldDoc)) { deny('changing a doc outside the share'); }
}"""


def guard_doc(scopes: dict[str, dict], broker: str) -> dict:
    """The design doc for these scopes (share user name -> scope)."""
    source = VALIDATE % {
        "scopes": json.dumps(scopes, sort_keys=True),
        "prefixes": json.dumps(SHARED_PREFIXES, sort_keys=True),
    }
    return {
        "_id": GUARD_ID,
        "language": "javascript",
        "validate_doc_update": source,
        "sharing_broker": {"broker": broker, "scopes": scopes},
    }


class GuardEditor:
    """Sets or drops one share user's scope in a database's guard, one edit at a time."""

    def __init__(self, couch: CouchClient, locks: DatabaseLocks, broker: str):
        self.couch = couch
        self.locks = locks
        self.broker = broker

    def scopes(self, db: str) -> dict[str, dict]:
        """This broker's scopes in the database's guard (none if the guard is another's)."""
        try:
            label = self.couch.get(db, GUARD_ID).get("sharing_broker") or {}
        except NotFound:
            return {}
        return label.get("scopes", {}) if label.get("broker") == self.broker else {}

    def ensure_scope(self, db: str, name: str, scope: dict | None) -> bool:
        """Return whether the guard was changed; the last scope gone removes the doc."""
        if self.scopes(db).get(name) == scope:
            return False
        with self.locks.hold(db):
            for _ in range(3):
                try:
                    current = self.couch.get(db, GUARD_ID)
                except NotFound:
                    current = {}
                scopes = dict(current.get("sharing_broker", {}).get("scopes", {}))
                if scope is None:
                    scopes.pop(name, None)
                else:
                    scopes[name] = scope
                try:
                    self._write(db, current.get("_rev"), scopes)
                    return True
                except DocumentConflict:
                    continue
        raise DocumentConflict(409, "conflict", "the guard kept changing", f"PUT /{db}/{GUARD_ID}")

    def _write(self, db: str, rev: str | None, scopes: dict[str, dict]) -> None:
        if not scopes:
            if rev:
                self.couch.delete(db, GUARD_ID, params={"rev": rev})
            return
        doc = guard_doc(scopes, self.broker)
        if rev:
            doc["_rev"] = rev
        self.couch.put(db, GUARD_ID, json=doc)
