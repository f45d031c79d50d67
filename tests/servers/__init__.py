"""The CouchDB server for tests, the dev server and the bench, and how one is chosen.

`choose.start_server()` takes, in order: a running server given by `COUCHDB_URL`, a launcher
given by `COUCHDB_LAUNCHER`, Docker's `apache/couchdb:3` image, and pouchdb-server as the
fallback (on which no replication runs). `COUCHDB_SERVER=pouchdb` asks for the fallback.
"""
