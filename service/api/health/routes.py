"""Liveness and readiness probes."""

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from service.api.context import broker
from service.api.problems import problem
from service.couch import CouchError, CouchUnavailable
from service.sharing.replicator import REPLICATOR_DB

blp = Blueprint("health", __name__, description="Probes for orchestrators.")


class HealthSchema(ma.Schema):
    status = ma.fields.String(metadata={"example": "ok"})


@blp.route("/healthz")
class Liveness(MethodView):
    @blp.doc(security=[])
    @blp.response(200, HealthSchema)
    def get(self):
        """Say that the process is alive"""
        return {"status": "ok"}


@blp.route("/readyz")
class Readiness(MethodView):
    @blp.doc(security=[])
    @blp.response(200, HealthSchema)
    @blp.alt_response(
        503,
        description="CouchDB is unreachable or refuses the broker, or others can read the"
        " state database",
    )
    def get(self):
        """Check CouchDB, the service credentials, and the state database and its lock"""
        b = broker()
        try:
            session = b.couch.get("_session")
            if not (session.get("userCtx") or {}).get("name"):
                return problem(503, "CouchDB does not accept the service credentials")
            b.store.ensure()
            exposure = b.store.exposure()
            b.couch.get(REPLICATOR_DB)
        except (CouchError, CouchUnavailable) as exc:
            return problem(503, f"not ready: {exc}")
        if exposure is not None:
            return problem(
                503, f"not ready: the state database {b.store.db} is exposed: {exposure}"
            )
        return {"status": "ok"}
