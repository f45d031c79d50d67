"""Server settings that make every on-change run dearer, named in the log once a server.

- `[replicator] startup_jitter`: CouchDB holds every job back a random while before it
  starts, up to this (5 s by default), which is every run's lag.
- `[chttpd_auth] upgrade_hash_on_auth` (CouchDB 3.4+, on by default): after a share user's
  first login CouchDB hashes its password again at the server's own rounds (600,000 by
  default), where the broker chose 10 for a 256-bit random password. CouchDB keeps a
  verified login for `[couch_passwords_cache] max_idle` (10 minutes), so a run whose user
  has not logged in since then verifies that hash again: about 140 ms more of CouchDB's
  CPU a run at 600,000 rounds (bench/runs.py), and most runs are for shares idle longer.
"""

import logging

from service.couch import CouchClient, CouchError, CouchUnavailable, NotFound

log = logging.getLogger(__name__)
JITTER_WARNING_MS = 1000
COUCHDB_JITTER_MS = 5000  # CouchDB's default `startup_jitter`
COUCHDB_ITERATIONS = 600_000  # CouchDB 3.4+'s default `[chttpd_auth] iterations`
HASH_WARNING_ROUNDS = 10_000  # about 3 ms of CouchDB's CPU a cold login: below, say nothing


class ServerChecks:
    """Reads each server's settings once, and warns about those above."""

    def __init__(self):
        self._checked: set[str] = set()

    def check_once(self, name: str, couch: CouchClient) -> None:
        if name in self._checked:
            return
        self._checked.add(name)
        jitter = _setting(couch, "replicator", "startup_jitter", COUCHDB_JITTER_MS)
        if str(jitter).isdigit() and int(jitter) > JITTER_WARNING_MS:
            log.warning(
                "server %s: [replicator] startup_jitter is %s ms, so each on-change run waits"
                " up to that long to start; set it to 100 or less",
                name,
                jitter,
            )
        upgrade = _setting(couch, "chttpd_auth", "upgrade_hash_on_auth", "true")
        rounds = _setting(couch, "chttpd_auth", "iterations", COUCHDB_ITERATIONS)
        if upgrade == "true" and str(rounds).isdigit() and int(rounds) >= HASH_WARNING_ROUNDS:
            log.warning(
                "server %s: [chttpd_auth] upgrade_hash_on_auth is on, so CouchDB hashes each"
                " share user's password again at %s rounds after its first login, and a run"
                " whose user has not logged in for 10 minutes verifies that hash again (about"
                " 140 ms more of CouchDB's CPU at 600,000 rounds); see docs/deploy.md",
                name,
                rounds,
            )


def _setting(couch: CouchClient, section: str, key: str, default: object) -> object:
    """A server setting, `default` where it is not set, None where it cannot be read."""
    try:
        return couch.get("_node", "_local", "_config", section, key)
    except NotFound:
        return default
    except (CouchError, CouchUnavailable):
        return None  # a server that hides its settings: nothing to say
