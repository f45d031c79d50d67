#!/usr/bin/env node
// One of a user's phones or tablets: a local PouchDB kept in a folder, syncing with the
// user's own CouchDB database the way the Inventory app's DBSyncManager does.
//
//   node device.js COMMAND 'JSON arguments'   prints one JSON answer on stdout
//
// Each call is one run of the app: it opens the device's database, does its work, closes
// it. The folder keeps the docs and the replication checkpoints between runs, as a phone
// does between launches.
//
// Commands (every one takes `dir`; the syncing ones `url`, `username`, `password` and
// `filtered`, true for the app versions that sync through `_design/app_sync_v0`):
//   sync    log in, then the start-up sync, then close: the app opened and closed again
//   live    log in, the start-up sync, then live sync until `until` holds or `timeout` s
//   pull    pull only, then close: the device's push checkpoint now lags its pull
//   docs    the device's live docs, with their conflicts
//   edit    set `data` fields of doc `id` (a local edit, as the app saves one)
//   remove  delete doc `id` locally
'use strict';

const PouchDB = require('pouchdb');
PouchDB.plugin(require('pouchdb-authentication'));

const FILTER_DDOC = 'app_sync_v0';
const CONFIG_ID = '0000-config';

async function connect(args) {
  const { url, username, password } = args;
  const remote = new PouchDB(url, { skip_setup: true, auth: { username, password } });
  await remote.logIn(username, password);
  await remote.info();
  await remote.getSession();
  return remote;
}

// The app refuses a database whose config it cannot read ("not an Inventory database").
async function checkConfig(local, remote) {
  try {
    await local.get(CONFIG_ID);
    return;
  } catch (e) {
    if (e.status !== 404) throw e;
  }
  const config = await remote.get(CONFIG_ID);
  if (typeof config.uuid !== 'string') throw new Error('not an Inventory database');
}

// One sync, one-shot or live, with what the app listens for counted.
function startSync(local, remote, options, seen) {
  const handler = local.sync(remote, { retry: true, ...options });
  handler.on('change', (info) => {
    seen.changes[info.direction] += info.change.docs_written;
  });
  handler.on('denied', (err) => {
    seen.denied.push((err && (err.id || (err.doc && err.doc.id))) || String(err && err.message));
  });
  handler.on('error', (err) => {
    seen.errors.push(String((err && (err.message || err.name)) || err));
  });
  return handler;
}

function oneShot(local, remote, options, seen) {
  return new Promise((resolve) => {
    const handler = startSync(local, remote, { ...options, live: false }, seen);
    handler.on('complete', resolve);
    handler.on('error', () => resolve(null));
  });
}

// The start-up sync: unfiltered in one run (older app versions, batch_size 20), or the
// newer app's three runs: primary data, then images one by one, then everything.
async function startupSync(local, remote, args, seen) {
  let runs = [{ batch_size: 20 }];
  if (args.filtered) {
    // The push side reads the filter from the device's own copy of the design doc.
    await local.replicate.from(remote, { doc_ids: [`_design/${FILTER_DDOC}`] });
    runs = [
      { batch_size: 16, batches_limit: 4, filter: `${FILTER_DDOC}/only_primary` },
      { batch_size: 1, batches_limit: 2, filter: `${FILTER_DDOC}/only_images` },
      { batch_size: 16, batches_limit: 4 },
    ];
  }
  let info = null;
  for (const run of runs) info = await oneShot(local, remote, run, seen);
  // The app counts it successful only when both ways are ok with no errors.
  return Boolean(
    info && info.push && info.pull && info.push.ok && info.pull.ok &&
      info.push.errors.length === 0 && info.pull.errors.length === 0 &&
      seen.denied.length === 0,
  );
}

// Whether `until` holds on the device: `{id, gone: true}`, or `{id, path, equals}`.
async function holds(local, until) {
  let doc = null;
  try {
    doc = await local.get(until.id);
  } catch (e) {
    if (e.status !== 404) throw e;
  }
  if (until.gone) return doc === null;
  if (doc === null) return false;
  const value = until.path.split('.').reduce((v, key) => (v == null ? v : v[key]), doc);
  return JSON.stringify(value) === JSON.stringify(until.equals);
}

async function live(local, remote, args, seen, started) {
  const complete = await startupSync(local, remote, args, seen);
  const handler = startSync(local, remote, { live: true, batch_size: args.filtered ? 2 : 20 }, seen);
  const deadline = started + (args.timeout || 20) * 1000;
  let met = false;
  while (Date.now() < deadline) {
    if (args.until && (await holds(local, args.until))) {
      met = true;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  handler.cancel();
  return { complete, met };
}

async function syncing(command, local, args) {
  const seen = { changes: { push: 0, pull: 0 }, denied: [], errors: [] };
  const started = Date.now();
  const remote = await connect(args);
  await checkConfig(local, remote);
  let answer;
  if (command === 'sync') answer = { complete: await startupSync(local, remote, args, seen) };
  else if (command === 'live') answer = await live(local, remote, args, seen, started);
  else {
    const info = await local.replicate.from(remote, { batch_size: 20 });
    answer = { complete: info.ok && info.errors.length === 0 };
    seen.changes.pull = info.docs_written;
  }
  // From logging in until done (for `live`, until `until` held), the app's own time.
  return { ...answer, elapsed_ms: Date.now() - started, pushed: seen.changes.push,
    pulled: seen.changes.pull, denied: seen.denied, errors: seen.errors };
}

async function docs(local) {
  const all = await local.allDocs({ include_docs: true, conflicts: true });
  return { docs: all.rows.map((row) => row.doc) };
}

async function edit(local, args) {
  const doc = await local.get(args.id);
  doc.data = { ...(doc.data || {}), ...args.data };
  doc.updated_at = Date.now();
  return { rev: (await local.put(doc)).rev };
}

async function remove(local, args) {
  const doc = await local.get(args.id);
  return { rev: (await local.remove(doc)).rev };
}

async function main() {
  const [command, raw] = process.argv.slice(2);
  const args = JSON.parse(raw || '{}');
  const local = new PouchDB(args.dir);
  try {
    if (['sync', 'live', 'pull'].includes(command)) return await syncing(command, local, args);
    if (command === 'docs') return await docs(local);
    if (command === 'edit') return await edit(local, args);
    if (command === 'remove') return await remove(local, args);
    throw new Error(`unknown command: ${command}`);
  } finally {
    await local.close();
  }
}

main().then(
  (answer) => process.stdout.write(JSON.stringify(answer) + '\n'),
  (err) => {
    process.stdout.write(JSON.stringify({ failed: String((err && err.message) || err) }) + '\n');
    process.exitCode = 1;
  },
);
