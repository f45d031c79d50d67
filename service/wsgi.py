"""The WSGI entry point for gunicorn: `service.wsgi:app`."""

import sys
import threading

from service.app import create_app, ensure_state_db
from service.config import ConfigError
from service.logs import configure_logging
from service.sharing.core.lease import Lease
from service.sharing.lifecycle.reconcile import reconcile_every
from service.sharing.watching.followers import FollowersLease, follow_every, lease_seconds
from service.sharing.watching.webhooks import WebhookDelivery, deliver_every

configure_logging()
try:
    app = create_app()
    ensure_state_db(app)
except ConfigError as exc:
    print(f"sharing-broker: {exc}", file=sys.stderr)
    sys.exit(2)

settings = app.config["BROKER_SETTINGS"]
broker = app.extensions["sharing_broker"]
STOP = threading.Event()
WEBHOOK_PASS_SECONDS = 5.0  # passes come sooner, as events arrive
_threads: list[threading.Thread] = []


def _in_background(name: str, loop, *args) -> None:
    thread = threading.Thread(target=loop, args=(*args, STOP), daemon=True, name=name)
    thread.start()
    _threads.append(thread)


def shutdown(seconds: float = 5.0) -> None:
    """Stop the background loops and let them give up their leases (gunicorn's
    `worker_exit` calls this on a graceful stop)."""
    STOP.set()
    broker.feed.stop()
    for thread in _threads:
        thread.join(seconds)


# Every worker runs the loops; leases in the state database let one work at a time.
if settings.reconcile_interval_seconds:
    _in_background(
        "reconcile", reconcile_every, settings.reconcile_interval_seconds, broker.reconciler
    )
if settings.follow_interval_seconds:
    interval = settings.follow_interval_seconds
    known = {site.name for site in broker.sites}
    lease = FollowersLease(broker.store, known, lease_seconds(interval))
    _in_background(
        "followers",
        follow_every,
        interval,
        broker.followers(),
        lease,
        broker.database_updates(),
    )
# One replica at a time delivers webhooks, so each event goes out once per endpoint.
_in_background(
    "webhooks",
    deliver_every,
    WEBHOOK_PASS_SECONDS,
    WebhookDelivery(broker.webhooks),
    Lease(broker.store.couch, broker.store.db, "webhooks-lease", 6 * WEBHOOK_PASS_SECONDS),
)
