"""Webhook endpoints, for admins: the feed of share events pushed to a backend."""

from dataclasses import asdict

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from service.api import idempotency
from service.api.auth import authenticate, require_admin
from service.api.context import broker
from service.api.fields import problems
from service.api.webhooks.schemas import (
    WebhookCreatedSchema,
    WebhookCreateSchema,
    WebhookListSchema,
    WebhookSchema,
)

blp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/v1/webhooks",
    description="Endpoints that the share events are pushed to, signed (admins only).",
)
blp.before_request(authenticate)
blp.before_request(idempotency.begin)
blp.after_request(idempotency.finish)


def _view(webhook) -> dict:
    """An endpoint as admins see it: not its place in the feed, nor its revision."""
    return {k: v for k, v in asdict(webhook).items() if k not in ("since", "rev")}


@blp.route("")
class Webhooks(MethodView):
    @problems(blp, 403)
    @blp.response(200, WebhookListSchema)
    def get(self):
        """List webhook endpoints and how their deliveries stand"""
        require_admin("list webhooks")
        return {"items": [_view(w) for w in broker().webhooks.all()]}

    @blp.arguments(WebhookCreateSchema)
    @problems(blp, 403, 422)
    @blp.response(201, WebhookCreatedSchema)
    @blp.doc(parameters=[idempotency.DOC])
    def post(self, body):
        """Register an endpoint: it gets the events from now on, signed with its secret"""
        require_admin("register webhooks")
        webhook, secret = broker().webhooks.add(body["url"], body.get("kinds"))
        location = url_for("webhooks.Webhook", webhook_id=webhook.id)
        return {**_view(webhook), "secret": secret}, 201, {"Location": location}


@blp.route("/<webhook_id>")
class Webhook(MethodView):
    @problems(blp, 403, 404)
    @blp.response(200, WebhookSchema)
    def get(self, webhook_id):
        """Read an endpoint and how its deliveries stand"""
        require_admin("read webhooks")
        return _view(broker().webhooks.get(webhook_id))

    @problems(blp, 403, 404, 409)
    @blp.response(204)
    @blp.doc(parameters=[idempotency.DOC])
    def delete(self, webhook_id):
        """Remove an endpoint: nothing more is sent to it"""
        require_admin("remove webhooks")
        broker().webhooks.remove(webhook_id)


@blp.route("/<webhook_id>/resume")
class ResumeWebhook(MethodView):
    @problems(blp, 403, 404, 409)
    @blp.response(200, WebhookSchema)
    @blp.doc(parameters=[idempotency.DOC])
    def post(self, webhook_id):
        """Deliver to a paused endpoint again, from where it stopped"""
        require_admin("resume webhooks")
        return _view(broker().webhooks.resume(webhook_id))
