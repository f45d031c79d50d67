function (newDoc, oldDoc, userCtx, secObj) {
  var scopes = @@SCOPES@@;
  var rules = @@RULES@@;
  var prefixes = {"collection": "collection-", "image": "zz20-image-", "item": "item-", "item_image": "item_image-"};
  var scope = scopes[userCtx.name];
  if (!scope) { return; }
  var rule = rules[userCtx.name];
  function deny(why) { throw({forbidden: 'sharing-broker guard: ' + why}); }
  if (scope.read_only) { deny('this share may not write here'); }
  var BAD_PATH = {};
  function rget(doc, path) {
    var value = doc;
    for (var i = 0; i < path.length; i++) {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) { return BAD_PATH; }
      if (!Object.prototype.hasOwnProperty.call(value, path[i])) { return undefined; }
      value = value[path[i]];
    }
    return value;
  }
  function rfield(doc, path, test) {
    var value = rget(doc, path);
    return value !== BAD_PATH && test(value);
  }
  function req(a, b) { return a !== null && typeof a !== 'object' && a === b; }
  function rin(v, list) {
    var values = Array.isArray(v) ? v : [v];
    for (var i = 0; i < values.length; i++) {
      for (var j = 0; j < list.length; j++) { if (req(values[i], list[j])) { return true; } }
    }
    return false;
  }
  function rall(v, list) {
    if (!Array.isArray(v)) { return false; }
    for (var j = 0; j < list.length; j++) { if (!rin(v, [list[j]])) { return false; } }
    return true;
  }
  function rsome(v, test) {
    if (!Array.isArray(v)) { return false; }
    for (var i = 0; i < v.length; i++) { if (test(v[i])) { return true; } }
    return false;
  }
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
    if (JSON.stringify(newDoc).length > 1000000) { deny('a doc over 1000000 characters'); }
    var atts = newDoc._attachments || {};
    for (var name in atts) {
      var att = atts[name];  // inline data counts by its base64 where no length is given
      var size = att.length !== undefined ? att.length : (att.data || '').length * 3 / 4;
      if (size > 10485760) { deny('an attachment over 10485760 bytes'); }
    }
    if (scope.owner_label) {
      var label = (newDoc.data || {}).config_uuid;
      var before = oldLive ? (oldLive.data || {}).config_uuid : undefined;
      if (oldLive && label !== before) { deny('changing whose a doc says it is'); }
      if (!oldLive && label === scope.owner_label) { deny("a new doc labelled as the owner's"); }
    }
  }
  if (newDoc._deleted) {
    if (newDoc["sharing_broker_ended"] !== undefined) { deny('a tombstone that ended another share'); }
    if (oldDoc && !oldDoc._deleted) {
      if (!inScope(oldDoc)) { deny('deleting a doc outside the share'); }
    } else if (!idInScope(newDoc._id)) { deny('a tombstone outside the share'); }
    return;
  }
  if (!inScope(newDoc)) { deny('a doc outside the share'); }
  if (oldDoc && !oldDoc._deleted && !inScope(oldDoc)) { deny('changing a doc outside the share'); }
}
