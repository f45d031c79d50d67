"""The HTTP layer: flask-smorest blueprints, problem responses and admin auth."""

import logging
from http import HTTPStatus

from flask import Flask
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException

from service.api import problems
from service.api.databases.routes import blp as databases_blp
from service.api.docs import blp as docs_blp
from service.api.events.routes import blp as events_blp
from service.api.fields import ConfigUuidPath
from service.api.health.routes import blp as health_blp
from service.api.reconcile.routes import blp as reconcile_blp
from service.api.shares.routes import blp as shares_blp
from service.api.spec_extras import SchemaExtras, field_extras
from service.api.webhooks.routes import blp as webhooks_blp
from service.couch import CouchError, CouchUnavailable, PermissionDenied
from service.sharing.core.errors import SharingError

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = "5"
SECURITY_SCHEMES = {
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "An admin token from BROKER_ADMIN_TOKENS: admin automation.",
    },
    "couchdbBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "A CouchDB user's own name and password, checked with CouchDB: the"
        " server the `CouchDB-Server` header names (its `BROKER_SERVERS` name), `default`"
        " without it.",
    },
    "couchdbSession": {
        "type": "apiKey",
        "in": "cookie",
        "name": "AuthSession",
        "description": "A CouchDB session cookie, from `POST /_session` on the server the"
        " `CouchDB-Server` header names (`default` without it); it counts there only.",
    },
}


class BrokerApi(Api):
    """An Api whose errors are `application/problem+json`, in responses and in the spec."""

    ERROR_SCHEMA = problems.ProblemSchema

    def handle_http_exception(self, error: HTTPException):
        data = getattr(error, "data", None) or {}
        messages = data.get("errors") or data.get("messages")
        errors = problems.field_errors(messages) if messages else None
        if errors:
            errors = {k.removeprefix("json.").removeprefix("query."): v for k, v in errors.items()}
        detail = data.get("message") or (problems.validation_detail(errors) if errors else None)
        # Werkzeug's own headers, such as a 405's `Allow` (RFC 9110), but not its HTML type.
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        headers.update(data.get("headers") or {})
        return problems.problem(error.code, detail or error.description, errors, headers=headers)

    def _register_responses(self):
        for status in HTTPStatus:
            response = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, problems.PROBLEM_TYPE)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, problems.PROBLEM_TYPE)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)


def init_api(app: Flask) -> BrokerApi:
    """Register the blueprints, admin auth and the error handlers on `app`."""
    app.url_map.converters["config_uuid"] = ConfigUuidPath
    api = BrokerApi(app, spec_kwargs={"extra_plugins": [SchemaExtras()]})
    api.ma_plugin.converter.add_attribute_function(field_extras)
    api.register_converter(ConfigUuidPath, lambda _: {"type": "string", "minLength": 1})
    for name, scheme in SECURITY_SCHEMES.items():
        api.spec.components.security_scheme(name, scheme)
    blueprints = (databases_blp, shares_blp, events_blp, webhooks_blp, reconcile_blp, health_blp)
    for blueprint in blueprints:
        api.register_blueprint(blueprint)
    app.register_blueprint(docs_blp)
    app.register_error_handler(SharingError, _sharing_error)
    app.register_error_handler(CouchUnavailable, _couch_unavailable)
    app.register_error_handler(CouchError, _couch_error)
    return api


def _sharing_error(error: SharingError):
    errors = {error.field: [error.detail]} if error.field else None
    return problems.problem(error.status, error.detail, errors)


def _couch_unavailable(error: CouchUnavailable):
    log.warning("CouchDB server %r unavailable during %s", error.server, error.operation)
    return problems.problem(
        503,
        f"CouchDB server {error.server!r} is unavailable; try again shortly",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def _couch_error(error: CouchError):
    log.warning("CouchDB refused %s: %s %s", error.operation, error.status, error.error)
    if isinstance(error, PermissionDenied):
        return problems.problem(502, "CouchDB refused the broker's service credentials")
    return problems.problem(502, f"CouchDB refused the request: {error.status} {error.error}")
