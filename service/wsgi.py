"""The WSGI entry point for gunicorn: `service.wsgi:app`."""

import sys
import threading

from service.app import create_app, ensure_state_db
from service.config import ConfigError
from service.logs import configure_logging
from service.sharing.reconcile import reconcile_every

configure_logging()
try:
    app = create_app()
    ensure_state_db(app)
except ConfigError as exc:
    print(f"sharing-broker: {exc}", file=sys.stderr)
    sys.exit(2)

interval = app.config["BROKER_SETTINGS"].reconcile_interval_seconds
if interval:
    # Every worker runs the loop; the lease in the state database lets one work at a time.
    threading.Thread(
        target=reconcile_every,
        args=(interval, app.extensions["sharing_broker"].reconciler, threading.Event()),
        daemon=True,
        name="reconcile",
    ).start()
