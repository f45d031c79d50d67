"""The write guard: a `validate_doc_update` of the broker's own in every shared database.

For a share user it lets through only writes inside that share's scope; for anyone else it
does nothing, so the database's own users and admins are never blocked. One design doc per
database holds the scopes of every share that touches it.
"""

import json
import threading
from collections import OrderedDict

from service.couch import CouchClient, DocumentConflict, NotFound
from service.sharing.crossing.rules import JS_HELPERS, RULE_TYPES, parse_rules, rules_js
from service.sharing.crossing.selectors import ENDED_MARK, SHARED_PREFIXES
from service.sharing.placing.locks import DatabaseLocks

GUARD_ID = "_design/sharing-broker-guard"

# The scope of a share user in one database: `read_only` refuses every write; otherwise a
# doc must be of a shared kind, carry its kind's `_id` prefix and belong to a shared
# collection (`collections` null: any; `item_collections`, when set, for items and
# pictures), pass the share's rules (`rules`: one predicate per kind), and, for a picture,
# belong to a shared item (`item_ids`, when set); or be the share's own `db_sharing` doc.
# A tombstone the broker wrote when a share ended (`ENDED_MARK`) is never a share user's to
# carry: it would delete the owner's doc. In the owner's database (`owner_label`: the owner's
# Configuration UUID) a doc the recipient made may not pass for the owner's, and no doc may
# change whose it says it is. Everywhere, a doc's body is at most `MAX_DOC_CHARS` characters
# and each attachment at most `MAX_ATTACHMENT_BYTES`.
MAX_DOC_CHARS = 1_000_000  # the app's docs are a few KiB; CouchDB's own bound is 8 MB
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024  # the app's largest picture is 1440 px
VALIDATE = """function (newDoc, oldDoc, userCtx, secObj) {
  var scopes = %(scopes)s;
  var rules = %(rules)s;
  var prefixes = %(prefixes)s;
  var scope = scopes[userCtx.name];
  if (!scope) { return; }
  var rule = rules[userCtx.name];
  function deny(why) { throw({forbidden: 'sharing-broker guard: ' + why}); }
  if (scope.read_only) { deny('this share may not write here'); }
  %(helpers)s
  function unset(list) { return list === null || list === undefined; }
  function among(list, id) { return unset(list) || list.indexOf(id) !== -1; }
  function anyAmong(list, ids) {
    if (unset(list)) { return true; }
    ids = ids || [];
    for (var i = 0; i < ids.length; i++) { if (list.indexOf(ids[i]) !== -1) { return true; } }
    return false;
  }
  function inScope(doc) {
    if (scope.db_sharing && doc._id === scope.db_sharing) { return true; }
    var prefix = prefixes[doc.type];
    if (!prefix || doc._id.indexOf(prefix) !== 0) { return false; }
    var data = doc.data || {};
    var items = scope.item_collections || scope.collections;
    if (doc.type === 'collection') {
      return among(scope.collections, doc._id.substring(prefix.length)) && rule.collection(doc);
    }
    if (doc.type === 'item') { return among(items, data.collection_id) && rule.item(doc); }
    if (doc.type === 'item_image') {
      return among(items, data._item_collection_id) && among(scope.item_ids, data.item_id);
    }
    return anyAmong(items, data._item_collection_ids) && anyAmong(scope.item_ids, data._item_ids);
  }
  function idInScope(id) {
    if (scope.db_sharing && id === scope.db_sharing) { return true; }
    for (var kind in prefixes) { if (id.indexOf(prefixes[kind]) === 0) { return true; } }
    return false;
  }
  var oldLive = oldDoc && !oldDoc._deleted ? oldDoc : null;
  if (!newDoc._deleted) {
    if (JSON.stringify(newDoc).length > %(max_doc)d) { deny('a doc over %(max_doc)d characters'); }
    var atts = newDoc._attachments || {};
    for (var name in atts) {
      var att = atts[name];  // inline data counts by its base64 where no length is given
      var size = att.length !== undefined ? att.length : (att.data || '').length * 3 / 4;
      if (size > %(max_att)d) { deny('an attachment over %(max_att)d bytes'); }
    }
    if (scope.owner_label) {
      var label = (newDoc.data || {}).config_uuid;
      var before = oldLive ? (oldLive.data || {}).config_uuid : undefined;
      if (oldLive && label !== before) { deny('changing whose a doc says it is'); }
      if (!oldLive && label === scope.owner_label) { deny("a new doc labelled as the owner's"); }
    }
  }
  if (newDoc._deleted) {
    if (newDoc[%(ended)s] !== undefined) { deny('a tombstone that ended another share'); }
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
        "rules": _rule_predicates(scopes),
        "prefixes": json.dumps(SHARED_PREFIXES, sort_keys=True),
        "helpers": JS_HELPERS.strip().replace("\n", "\n  "),
        "ended": json.dumps(ENDED_MARK),
        "max_doc": MAX_DOC_CHARS,
        "max_att": MAX_ATTACHMENT_BYTES,
    }
    return {
        "_id": GUARD_ID,
        "language": "javascript",
        "validate_doc_update": source,
        "sharing_broker": {"broker": broker, "scopes": scopes},
    }


def _rule_predicates(scopes: dict[str, dict]) -> str:
    """`{user: {collection: fn, item: fn}}` in JavaScript, compiled from each scope's rules."""
    entries = []
    for name, scope in sorted(scopes.items()):
        rules = parse_rules(scope["rules"]) if scope.get("rules") else []
        kinds = ", ".join(f"{json.dumps(k)}: {rules_js(rules, k)}" for k in RULE_TYPES)
        entries.append(f"{json.dumps(name)}: {{{kinds}}}")
    return "{" + ", ".join(entries) + "}"


class GuardEditor:
    """Sets or drops share users' scopes in a database's guard, one edit at a time.

    It keeps the last guard doc it saw of each database (a few hundred at most). An edit
    starts from that doc, and writes carry its `_rev`: one gone stale costs a conflict and a
    read, never a scope.
    """

    KEPT = 512

    def __init__(self, couch: CouchClient, locks: DatabaseLocks, broker: str):
        self.couch = couch
        self.locks = locks
        self.broker = broker
        self._seen: OrderedDict[str, dict] = OrderedDict()
        self._seen_lock = threading.Lock()

    def scopes(self, db: str) -> dict[str, dict]:
        """This broker's scopes in the database's guard (none if the guard is another's)."""
        return self.scopes_in(self.current(db, fresh=True))

    def scopes_in(self, guard: dict) -> dict[str, dict]:
        """This broker's scopes in a guard doc as read."""
        label = guard.get("sharing_broker") or {}
        return label.get("scopes", {}) if label.get("broker") == self.broker else {}

    def ensure_scope(self, db: str, name: str, scope: dict | None) -> bool:
        """Return whether the guard was changed; takes the database's lock if it must."""
        if self.scopes(db).get(name) == scope:
            return False
        with self.locks.hold(db):
            return name in self.set_scopes(db, {name: scope})

    def current(self, db: str, fresh: bool = False) -> dict:
        """The guard doc (`{}` for none): as last seen, or read now when `fresh`."""
        if not fresh:
            with self._seen_lock:
                if db in self._seen:
                    return self._seen[db]
        try:
            doc = self.couch.get(db, GUARD_ID)
        except NotFound:
            doc = {}
        self.saw(db, doc)
        return doc

    def saw(self, db: str, doc: dict | None) -> None:
        """Remember the guard doc (None or `{}`: there is none) just read or written."""
        with self._seen_lock:
            self._seen[db] = doc or {}
            self._seen.move_to_end(db)
            while len(self._seen) > self.KEPT:
                self._seen.popitem(last=False)

    def set_scopes(
        self, db: str, wanted: dict[str, dict | None], current: dict | None = None
    ) -> set[str]:
        """Set scopes, or drop those wanted None, the caller holding the database's lock;
        the last scope gone removes the doc. `current` is the doc as just read, if it was.
        Return the names whose scope changed."""
        for _ in range(3):
            current = current if current is not None else self.current(db)
            scopes = dict(current.get("sharing_broker", {}).get("scopes", {}))
            changed = {name for name, scope in wanted.items() if scopes.get(name) != scope}
            if not changed:
                return set()
            for name in changed:
                if wanted[name] is None:
                    scopes.pop(name, None)
                else:
                    scopes[name] = wanted[name]
            try:
                self._write(db, current.get("_rev"), scopes)
                return changed
            except DocumentConflict:
                current = self.current(db, fresh=True)
        raise DocumentConflict(409, "conflict", "the guard kept changing", f"PUT /{db}/{GUARD_ID}")

    def _write(self, db: str, rev: str | None, scopes: dict[str, dict]) -> None:
        if not scopes:
            if rev:
                self.couch.delete(db, GUARD_ID, params={"rev": rev})
            self.saw(db, None)
            return
        doc = guard_doc(scopes, self.broker)
        if rev:
            doc["_rev"] = rev
        self.saw(db, {**doc, "_rev": self.couch.put(db, GUARD_ID, json=doc)["rev"]})
