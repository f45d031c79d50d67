"""The write guard: one fixed `validate_doc_update` of the broker's in every shared database.

A share user carries its scope in each database it may reach as a role of its own `_users`
doc (`scope_role`), beside the role that makes it a member there (`member_role`). The guard
reads the scope from the user context, so it never changes with a share: a share's access
changes with its own user doc, which has revisions, and no two shares edit one object.

For a share user it lets through only writes inside that database's scope, and refuses
every write of one with no scope there. For anyone else it does nothing, so the database's
own users and admins are never blocked.

A guard that took over from an earlier version's keeps that guard's scopes (by user name)
as a fallback, until each of those users has its scope as a role in force: then they go.
"""

import json

from service.couch import CouchClient, NotFound
from service.sharing.crossing.rules import JS_HELPERS
from service.sharing.crossing.selectors import ENDED_MARK, SHARED_PREFIXES
from service.sharing.placing.credentials import USER_PREFIX

GUARD_ID = "_design/sharing-broker-guard"
ROLE_PREFIX = "sharing-broker:"
MEMBER_ROLE = f"{ROLE_PREFIX}member:"
SCOPE_ROLE = f"{ROLE_PREFIX}scope:"

# The scope of a share user in one database: `read_only` refuses every write; otherwise a
# doc must be of a shared kind, carry its kind's `_id` prefix and belong to a shared
# collection (`collections` null: any; `item_collections`, when set, for items and
# pictures), pass the share's rules (`rules`, judged by `rpass`), and, for a picture,
# belong to a shared item (`item_ids`, when set); or be the share's own `db_sharing` doc.
# A tombstone the broker wrote when a share ended (`ENDED_MARK`) is never a share user's to
# carry: it would delete the owner's doc. In the owner's database (`owner_label`: the owner's
# Configuration UUID) a doc the recipient made may not pass for the owner's, and no doc may
# change whose it says it is. Everywhere, a doc's body is at most `MAX_DOC_CHARS` characters
# and each attachment at most `MAX_ATTACHMENT_BYTES`.
MAX_DOC_CHARS = 1_000_000  # the app's docs are a few KiB; CouchDB's own bound is 8 MB
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024  # the app's largest picture is 1440 px
VALIDATE = """function (newDoc, oldDoc, userCtx, secObj) {
  var roles = userCtx.roles || [];
  if (roles.indexOf('_admin') !== -1) { return; }
  var here = %(scope_role)s;
  var earlier = %(earlier)s;
  var shareUser = (userCtx.name || '').indexOf(%(user_prefix)s) === 0;
  var scope = null;
  for (var i = 0; i < roles.length; i++) {
    if (roles[i].indexOf(%(role_prefix)s) === 0) { shareUser = true; }
    if (roles[i].indexOf(here) === 0) { scope = JSON.parse(roles[i].substring(here.length)); }
  }
  if (!scope && Object.prototype.hasOwnProperty.call(earlier, userCtx.name)) {
    scope = earlier[userCtx.name];  // an own key only: a user named `constructor` is nobody
    shareUser = true;
  }
  if (!shareUser) { return; }
  var prefixes = %(prefixes)s;
  function deny(why) { throw({forbidden: 'sharing-broker guard: ' + why}); }
  if (!scope) { deny('no share gives this user a scope here'); }
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
      var id = doc._id.substring(prefix.length);
      return among(scope.collections, id) && rpass(scope.rules, 'collection', doc);
    }
    if (doc.type === 'item') {
      return among(items, data.collection_id) && rpass(scope.rules, 'item', doc);
    }
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


def member_role(db: str) -> str:
    """The role that makes a share user a member of `db` (set once in its `_security`)."""
    return f"{MEMBER_ROLE}{db}"


def scope_role(db: str, scope: dict) -> str:
    """The role that carries a share user's scope in `db`, for the guard to read."""
    return f"{SCOPE_ROLE}{db}:{json.dumps(scope, sort_keys=True, separators=(',', ':'))}"


def scopes_in_roles(roles: list[str]) -> dict[str, dict]:
    """The scopes that roles carry, by database."""
    scopes = {}
    for role in roles:
        if role.startswith(SCOPE_ROLE):
            db, _, scope = role.removeprefix(SCOPE_ROLE).partition(":")
            scopes[db] = json.loads(scope)
    return scopes


def guard_doc(db: str, broker: str, earlier: dict[str, dict] | None = None) -> dict:
    """The guard of `db`: the same for every share, and changed by none; with the scopes
    an earlier version's guard held (`earlier`, by user name) while they are needed."""
    earlier = earlier or {}
    source = VALIDATE % {
        "scope_role": json.dumps(f"{SCOPE_ROLE}{db}:"),
        "earlier": json.dumps(earlier, sort_keys=True),
        "user_prefix": json.dumps(USER_PREFIX),
        "role_prefix": json.dumps(ROLE_PREFIX),
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
        "sharing_broker": {"broker": broker, **({"scopes": earlier} if earlier else {})},
    }


def earlier_scopes(guard: dict, broker: str) -> dict[str, dict]:
    """The scopes by user name that a guard of this broker holds: every scope in an earlier
    version's guard; in the fixed guard, those kept from the one it took over from."""
    label = guard.get("sharing_broker") or {}
    return label.get("scopes", {}) if label.get("broker") == broker else {}


def read_guard(couch: CouchClient, db: str) -> dict:
    """The database's guard doc, `{}` for none."""
    try:
        return couch.get(db, GUARD_ID)
    except NotFound:
        return {}
