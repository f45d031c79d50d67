"""Liveness and readiness probes."""

from concurrent.futures import ThreadPoolExecutor, wait

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from service.api.context import broker
from service.api.problems import problem
from service.config import DEFAULT_SERVER
from service.couch import CouchClient, CouchError, CouchUnavailable
from service.sharing.core.sites import Sites
from service.sharing.placing.replicator import REPLICATOR_DB

SERVER_CHECK_SECONDS = 2.0
blp = Blueprint("health", __name__, description="Probes for orchestrators.")


class HealthSchema(ma.Schema):
    status = ma.fields.String(metadata={"example": "ok"})


class ReadinessSchema(HealthSchema):
    servers = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        metadata={
            "description": "Each server by name: `ok`, or why not.",
            "example": {"default": "ok", "home": "ok"},
        },
    )
    followers = ma.fields.String(
        metadata={
            "description": "`ok`, or why this replica never leads the followers: servers"
            " that registrations name and its settings do not.",
            "example": "ok",
        }
    )


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
    @blp.response(200, ReadinessSchema)
    @blp.alt_response(
        503,
        description="The `default` server is unreachable or refuses the broker, or others can"
        " read the state database",
    )
    def get(self):
        """Check each server and the service credentials, and the state database and its lock

        Ready while the `default` server, which holds the state, is. Another server that is
        down makes the answer `degraded`, still 200: the shares on the servers that are up
        go on working, and taking the broker out of service would not bring that one back.
        """
        b = broker()
        servers = _check_servers(b.sites)
        if servers[DEFAULT_SERVER] != "ok":
            return problem(503, f"not ready: {servers[DEFAULT_SERVER]}")
        try:
            b.store.ensure()
            exposure = b.store.exposure()
            unknown = b.store.unknown_servers({site.name for site in b.sites})
        except (CouchError, CouchUnavailable) as exc:
            return problem(503, f"not ready: {exc}")
        if exposure is not None:
            return problem(
                503, f"not ready: the state database {b.store.db} is exposed: {exposure}"
            )
        followers = "ok"
        if unknown:
            names = ", ".join(sorted(unknown))
            followers = f"not leading: registrations name servers unknown here: {names}"
        healthy = all(v == "ok" for v in servers.values()) and not unknown
        return {
            "status": "ok" if healthy else "degraded",
            "servers": servers,
            "followers": followers,
        }


def _check_servers(sites: Sites) -> dict[str, str]:
    """Each server's state, checked at once. One that has not answered within
    `SERVER_CHECK_SECONDS` is reported so, and the probe does not wait for its timeouts."""
    servers = list(sites)
    pool = ThreadPoolExecutor(max_workers=len(servers))
    checks = {site.name: pool.submit(_server_check, site.couch) for site in servers}
    wait(checks.values(), timeout=SERVER_CHECK_SECONDS)
    pool.shutdown(wait=False)  # a check still under way ends with its own timeout
    late = f"no answer within {SERVER_CHECK_SECONDS:g} s"
    return {name: check.result() if check.done() else late for name, check in checks.items()}


def _server_check(couch: CouchClient) -> str:
    """`ok` if the server takes the service credentials and has a `_replicator`."""
    try:
        session = couch.get("_session")
        if not (session.get("userCtx") or {}).get("name"):
            return "CouchDB does not accept the service credentials"
        couch.get(REPLICATOR_DB)
    except (CouchError, CouchUnavailable) as exc:
        return str(exc)
    return "ok"
