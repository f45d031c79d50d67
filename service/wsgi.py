"""The WSGI entry point for gunicorn: `service.wsgi:app`."""

import sys

from service.app import create_app, ensure_state_db
from service.config import ConfigError

try:
    app = create_app()
    ensure_state_db(app)
except ConfigError as exc:
    print(f"sharing-broker: {exc}", file=sys.stderr)
    sys.exit(2)
