"""Prometheus metrics shared by the layers. A leaf module: it imports nothing of the service.

Under gunicorn, `service/gunicorn_conf.py` sets PROMETHEUS_MULTIPROC_DIR so that every
worker's figures add up in one scrape.
"""

import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

HTTP_REQUESTS = Counter(
    "sharing_broker_http_requests_total", "API requests", ["endpoint", "method", "status"]
)
HTTP_SECONDS = Histogram(
    "sharing_broker_http_request_seconds", "API request latency", ["endpoint", "method"]
)
COUCH_REQUESTS = Counter(
    "sharing_broker_couchdb_requests_total", "CouchDB calls", ["server", "operation", "outcome"]
)
COUCH_SECONDS = Histogram(
    "sharing_broker_couchdb_request_seconds", "CouchDB call latency", ["server", "operation"]
)
RECONCILE_REPAIRS = Counter(
    "sharing_broker_reconcile_repairs_total", "Repairs made by reconcile", ["kind"]
)
# Set by whichever worker holds the followers' lease; the others never set it.
REPLICATIONS = Gauge(
    "sharing_broker_replications",
    "The broker's replications that are not running (on-change mode: and running), by"
    " server and state, as last recorded",
    ["server", "state"],
    multiprocess_mode="livemax",
)
REPLICATIONS_DUE = Gauge(
    "sharing_broker_replications_due",
    "On-change mode: replications waiting for a run to start",
    multiprocess_mode="livemax",
)
FOLLOWERS_UNKNOWN_SERVERS = Gauge(
    "sharing_broker_followers_unknown_servers",
    "Servers that registrations name and this replica's settings do not: while above 0, it"
    " never leads the followers",
    multiprocess_mode="livemax",
)
FAILED_LOGINS = Counter(
    "sharing_broker_failed_logins_total",
    "Logins to the broker that failed: `refused` (401), or `limited` (429, past a bound)",
    ["outcome"],
)
WEBHOOK_DELIVERIES = Counter(
    "sharing_broker_webhook_deliveries_total",
    "Events sent to webhook endpoints: `delivered` (2xx), `refused` (another status) or"
    " `unreachable`",
    ["outcome"],
)
WEBHOOKS_PAUSED = Gauge(
    "sharing_broker_webhooks_paused",
    "Webhook endpoints paused after failing again and again, until an admin resumes them",
    multiprocess_mode="livemax",
)
REPLICATION_RUNS = Counter(
    "sharing_broker_replication_runs_total", "On-change mode: one-shot runs started"
)
REPLICATION_RUNS_SPARED = Counter(
    "sharing_broker_replication_runs_spared_total",
    "On-change mode: runs not started, the target holding every revision already",
)
STATE_CONFLICTS = Counter(
    "sharing_broker_state_conflicts_total",
    "Docs of the state database found with conflicting branches (reconcile resolves them)",
)
FORGED_BRANCHES_REMOVED = Counter(
    "sharing_broker_forged_branches_removed_total", "Forged branches the watcher deleted"
)
OWNER_VERSIONS_KEPT = Counter(
    "sharing_broker_owner_versions_kept_total",
    "Docs a share carries that the broker set back to the owner's version in the recipient's "
    "database: an edit under a read-only share, or a copy withdrawn when a share ended",
)


def couch_operation(method: str, segments: tuple[str, ...]) -> str:
    """A call's shape without names or ids: `PUT _replicator/{doc}`, `POST {db}/_find`."""
    shape = [
        s if s.startswith("_") else ("{db}" if i == 0 else "{doc}")
        for i, s in enumerate(segments[:3])
    ]
    return f"{method} {'/'.join(shape)}"


def exposition(*extra) -> bytes:
    """The text exposition of every worker's metrics, plus `extra` collectors."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    scraped = CollectorRegistry()
    for collector in extra:
        scraped.register(collector)
    return text + generate_latest(scraped)
