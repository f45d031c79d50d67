"""The application factory."""

import logging

from flask import Flask

from service.api import init_api
from service.api.auth import LoginLimits
from service.api.docs import ASSETS_URL
from service.api.limits import init_limits
from service.api.observability import init_observability
from service.config import Settings
from service.couch import CouchError, CouchUnavailable
from service.sharing.broker import Broker

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app; settings default to the environment."""
    settings = settings or Settings.from_env()
    app = Flask("sharing_broker")
    app.config.update(
        BROKER_SETTINGS=settings,
        API_TITLE="Sharing Broker",
        API_VERSION="1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL=ASSETS_URL,
        API_SPEC_OPTIONS={
            "info": {
                "description": "Shares collections of Inventory app data between two CouchDB"
                " databases, without anyone handing out a password."
            },
            # Any one of them: admin automation, or a CouchDB user's own credentials.
            "security": [{"adminToken": []}, {"couchdbBasic": []}, {"couchdbSession": []}],
        },
    )
    app.extensions["sharing_broker"] = Broker.from_settings(settings)
    app.extensions["sharing_broker_failed_logins"] = LoginLimits(
        settings.failed_logins_per_name, settings.failed_logins_per_client
    )
    init_api(app)
    init_limits(app)
    init_observability(app)
    return app


def ensure_state_db(app: Flask) -> None:
    """Create the state database if CouchDB can be reached now; /readyz tries again."""
    broker = app.extensions["sharing_broker"]
    try:
        broker.store.ensure()
    except (CouchError, CouchUnavailable) as exc:
        log.warning("state database not checked at start-up (%s); /readyz retries", exc)
