"""Every setting the broker reads, with its default and meaning: the source of the tables in
docs/configuration.md (`sharing-broker docs write`; `--check` in the tests and CI).

`tests/test_docs.py` holds it to the code: each `BROKER_*` name the code reads is here, and
each name here is read somewhere.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str
    default: str  # as shown: "" for none
    meaning: str
    required: str = "no"


SERVICE = (
    Setting(
        "BROKER_COUCHDB_URL",
        "",
        "The CouchDB server holding the users' databases and the broker's state. No"
        " credentials in the URL.",
        "yes",
    ),
    Setting(
        "BROKER_COUCHDB_USER",
        "",
        "The broker's service account on that server (a server admin).",
        "yes",
    ),
    Setting("BROKER_COUCHDB_PASSWORD", "", "Its password. Never logged, never returned.", "yes"),
    Setting(
        "BROKER_ADMIN_TOKENS",
        "",
        "Bearer tokens for admin automation, comma-separated, 16 characters or more each."
        " Write `label:token` to name a token in the audit trail.",
        "yes",
    ),
    Setting(
        "BROKER_REPLICATION_URL",
        "`BROKER_COUCHDB_URL`",
        "How CouchDB itself reaches the databases, when that differs from how the broker"
        " reaches them.",
    ),
    Setting(
        "BROKER_STATE_DB",
        "`sharing_broker`",
        "The database holding the broker's state; created if missing, and locked to server admins.",
    ),
    Setting(
        "BROKER_RECORD_KEY",
        "derived from `BROKER_COUCHDB_PASSWORD`",
        "The key (32 characters or more) that seals the broker's records. Set it, the same on"
        " every replica, before you ever rotate the CouchDB password: with the derived key, a"
        " new password unseals every record.",
    ),
    Setting("BROKER_COUCHDB_CONNECT_TIMEOUT", "`3.05`", "Seconds to connect to CouchDB."),
    Setting("BROKER_COUCHDB_READ_TIMEOUT", "`10`", "Seconds to wait for CouchDB's answer."),
    Setting(
        "BROKER_INVITATION_TTL_SECONDS",
        "`604800` (7 days)",
        "How long an invitation waits for the recipient.",
    ),
    Setting(
        "BROKER_RECONCILE_INTERVAL", "`0` (off)", "Seconds between background reconcile passes."
    ),
    Setting(
        "BROKER_MAX_PENDING_INVITATIONS",
        "`20`",
        "How many invitations a user's database may have waiting at once; one more is 409,"
        " naming this setting. Admins are not bounded.",
    ),
    Setting(
        "BROKER_MAX_LIVE_SHARES",
        "`200`",
        "How many live shares (invitations included) a user's database may take part in;"
        " inviting or accepting past it is 409, naming this setting. Admins are not bounded.",
    ),
    Setting(
        "BROKER_FAILED_LOGINS_PER_NAME",
        "`5`",
        "Failed logins a minute for one CouchDB user name from one client; past it, that name"
        " gets 429 with `Retry-After` from that client.",
    ),
    Setting(
        "BROKER_FAILED_LOGINS_PER_CLIENT",
        "`50`",
        "Failed logins a minute from one client, whatever the names; past it, every login from"
        " that client gets 429. Raise it for a backend that logs in for many users.",
    ),
    Setting(
        "BROKER_MAX_WAITING",
        "`2`",
        "Long polls and event streams (`GET /v1/events`) one worker process holds at once;"
        " each holds one of its `BROKER_THREADS`. Past it, a long poll answers at once and a"
        " stream gets 503 with `Retry-After`. Keep it under `BROKER_THREADS`.",
    ),
    Setting(
        "BROKER_LONGEST_WAIT",
        "`60`",
        "The longest (seconds) a long poll of `GET /v1/events` waits, whatever its `timeout`"
        " asks; keep it under the idle timeout of the proxies in front of the broker.",
    ),
    Setting(
        "BROKER_OPERATION_GRACE",
        "`60`",
        "How old (seconds) an operation in a share's record must be before reconcile takes it"
        " over: a younger one may still be running in another replica's request. Keep it above"
        " `BROKER_TIMEOUT`.",
    ),
    Setting(
        "BROKER_FOLLOW_INTERVAL",
        "`2`",
        "The followers (on-change runs, forged-branch watch, rule id lists, replication"
        " states) run as soon as `default`'s `_db_updates` moves, and at least this many"
        " seconds apart; `0` turns them off (continuous mode only).",
    ),
    Setting(
        "BROKER_REPLICATION_MODE",
        "`on_change`",
        "How share replications run: runs the followers start `on_change` (transient"
        ' replications), or `continuous` jobs. See [Deploy](deploy.md), "Replication mode".'
        " `on_change` needs `BROKER_FOLLOW_INTERVAL` above 0, and CouchDB's `[replicator]"
        " startup_jitter` at 100 ms or less. Both modes hold on a CouchDB cluster.",
    ),
    Setting(
        "BROKER_MAX_RUNS",
        "`200`",
        "On-change mode: the most runs at once on one CouchDB server, the longest waiting"
        " first. Keep it under that server's `[replicator] max_jobs`. Each run in progress"
        " holds a thread and a connection of the followers' process.",
    ),
    Setting(
        "BROKER_SERVERS",
        "",
        "More CouchDB servers, comma-separated names (a lower-case letter, then up to 31"
        " lower-case letters, digits or `_`). The server above is `default`. See"
        " [Two servers](two-servers.md).",
    ),
    Setting(
        "BROKER_SERVER_<NAME>_URL",
        "",
        "That server's URL, no credentials. `<NAME>` is its name in upper case.",
        "for each",
    ),
    Setting(
        "BROKER_SERVER_<NAME>_USER`, `_PASSWORD",
        "",
        "The broker's service account there (a server admin); the password may come from"
        " `_PASSWORD_FILE`.",
        "for each",
    ),
    Setting(
        "BROKER_SERVER_<NAME>_REPLICATION_URL",
        "its URL",
        "How the replicators of every server, its own included, reach it.",
    ),
)

SERVING = (
    Setting("BROKER_BIND", "`0.0.0.0:8000`", "The address and port gunicorn listens on."),
    Setting("BROKER_WORKERS", "`2`", "gunicorn worker processes."),
    Setting("BROKER_THREADS", "`4`", "Threads per worker (`gthread`)."),
    Setting(
        "BROKER_WORKER_CONNECTIONS",
        "`1000`",
        "Connections one worker holds at once, waiting ones included: raise it above"
        " `BROKER_MAX_WAITING` for a replica that holds many long polls.",
    ),
    Setting(
        "BROKER_TIMEOUT",
        "`30`",
        "Seconds a worker may take over one request before gunicorn restarts it.",
    ),
    Setting(
        "BROKER_GRACEFUL_TIMEOUT",
        "`30`",
        "Seconds a stopping worker has to finish its requests and give up its leases.",
    ),
    Setting(
        "BROKER_FORWARDED_ALLOW_IPS",
        "`127.0.0.1`",
        "The proxies trusted to set `X-Forwarded-For` and `-Proto`: addresses or CIDR ranges,"
        " comma-separated. Only what they append names the client (for the failed-login"
        " bounds). `*` trusts one hop: use it only where nothing but the ingress can reach the"
        " broker.",
    ),
    Setting(
        "PROMETHEUS_MULTIPROC_DIR",
        "a new folder in `/dev/shm`, removed on exit",
        "Where the workers write their metrics, so that one scrape of `/metrics` adds them up."
        " One you name stays.",
    ),
)

CLI = (
    Setting(
        "BROKER_URL", "`http://127.0.0.1:8000`", "The broker the admin CLI calls (or `--url`)."
    ),
    Setting(
        "BROKER_TOKEN",
        "",
        "The admin token the CLI calls it with: one of the broker's `BROKER_ADMIN_TOKENS`.",
        "for the admin commands",
    ),
)

TABLES = (
    ("The service (`sharing-broker serve`, every replica)", SERVICE),
    ("Serving (gunicorn, `service/gunicorn_conf.py`)", SERVING),
    ("The admin CLI (`sharing-broker databases|shares|reconcile`)", CLI),
)


def markdown() -> str:
    """The tables of docs/configuration.md, one per part that reads settings."""
    parts = []
    for title, settings in TABLES:
        rows = [f"| `{s.name}` | {s.required} | {s.default} | {s.meaning} |" for s in settings]
        header = ["| Setting | Required | Default | Meaning |", "|---|---|---|---|"]
        parts.append("\n".join([f"### {title}", "", *header, *rows]))
    return "\n\n".join(parts) + "\n"
