"""Registering user databases by their Configuration UUID."""

from dataclasses import asdict

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from service.api import idempotency
from service.api.auth import authenticate, caller, require_admin
from service.api.context import broker
from service.api.databases.schemas import (
    DatabasePageSchema,
    DatabaseRegisterSchema,
    DatabaseSchema,
    DisputeListSchema,
)
from service.api.fields import PageQuerySchema, problems

blp = Blueprint(
    "databases",
    __name__,
    url_prefix="/v1/databases",
    description="User databases, known by the Configuration UUID in their `0000-config`.",
)
blp.before_request(authenticate)
blp.before_request(idempotency.begin)
blp.after_request(idempotency.finish)


@blp.route("")
class Databases(MethodView):
    @blp.arguments(PageQuerySchema, location="query")
    @problems(blp, 403, 422)
    @blp.response(200, DatabasePageSchema)
    def get(self, query):
        """List registered databases (admins only)"""
        require_admin("list every database")
        found, next_cursor = broker().store.list_databases(query.get("cursor"), query["limit"])
        return {"items": [asdict(d) for d in found], "next_cursor": next_cursor}

    @blp.arguments(DatabaseRegisterSchema)
    @problems(blp, 400, 403, 404, 409, 422, 502)
    @blp.response(201, DatabaseSchema, description="Registered")
    @blp.alt_response(200, schema=DatabaseSchema, description="Already registered, unchanged")
    @blp.doc(parameters=[idempotency.DOC])
    def post(self, body):
        """Register a database by reading its 0000-config"""
        who = caller()
        server = body.get("server", who.server)
        broker().policy.require_database(who, server, body["database"], "database")
        database, created = broker().registry.register(server, body["database"], who.actor)
        location = url_for("databases.Database", config_uuid=database.config_uuid)
        return asdict(database), 201 if created else 200, {"Location": location}


@blp.route("/disputes")
class Disputes(MethodView):
    @problems(blp, 403)
    @blp.response(200, DisputeListSchema)
    def get(self):
        """List Configuration UUIDs that a second database claimed (admins only)"""
        require_admin("list disputes")
        return {"items": broker().store.disputes()}


@blp.route("/disputes/<config_uuid>")
class Dispute(MethodView):
    @problems(blp, 403, 404, 409)
    @blp.response(204)
    @blp.doc(parameters=[idempotency.DOC])
    def delete(self, config_uuid):
        """Dismiss every claim on a Configuration UUID; its registration stays (admins only)"""
        require_admin("dismiss claims")
        broker().registry.dismiss_claims(config_uuid, caller().actor)


@blp.route("/<config_uuid:config_uuid>")
class Database(MethodView):
    @problems(blp, 403, 404)
    @blp.response(200, DatabaseSchema)
    def get(self, config_uuid):
        """Read one registered database"""
        return asdict(broker().policy.require_registered(caller(), config_uuid, "config_uuid"))

    @problems(blp, 403, 404, 409)
    @blp.response(204)
    @blp.doc(parameters=[idempotency.DOC])
    def delete(self, config_uuid):
        """Forget a database; refused while it takes part in a live share"""
        who = caller()
        broker().policy.require_registered(who, config_uuid, "config_uuid")
        broker().registry.remove(config_uuid, who.actor)
