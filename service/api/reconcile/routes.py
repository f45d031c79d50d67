"""Reconcile on demand, for admins."""

from dataclasses import asdict

from flask.views import MethodView
from flask_smorest import Blueprint

from service.api.auth import authenticate, require_admin
from service.api.context import broker
from service.api.fields import problems
from service.api.reconcile.schemas import ReconcileReportSchema

blp = Blueprint(
    "reconcile",
    __name__,
    url_prefix="/v1/reconcile",
    description="Repair drift between the share records and CouchDB.",
)
blp.before_request(authenticate)


@blp.route("")
class Reconcile(MethodView):
    @problems(blp, 403)
    @blp.response(200, ReconcileReportSchema)
    def post(self):
        """Finish interrupted operations, restore missing parts, remove orphans (admins)"""
        require_admin("reconcile")
        return asdict(broker().reconciler().run())
