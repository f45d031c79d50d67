"""Request ids, request metrics, and the /metrics endpoint."""

import re
import time
import uuid

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily

from service.api.context import broker
from service.metrics import HTTP_REQUESTS, HTTP_SECONDS, exposition

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class SharesByStatus:
    """A collector that counts share records per status when scraped."""

    def collect(self):
        family = GaugeMetricFamily("sharing_broker_shares", "Shares by status", labels=["status"])
        for status, count in sorted(broker().store.count_by_status().items()):
            family.add_metric([status], count)
        yield family


def _begin() -> None:
    sent = request.headers.get("X-Request-ID", "")
    g.request_id = sent if REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
    g.started = time.perf_counter()


def _finish(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.get("request_id", "")
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    HTTP_REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
    if "started" in g:
        HTTP_SECONDS.labels(endpoint, request.method).observe(time.perf_counter() - g.started)
    return response


def metrics() -> Response:
    """Prometheus metrics: requests, CouchDB calls, shares by status, reconcile repairs."""
    # The header whole: as a mimetype, Flask would add a second charset to it.
    return Response(exposition(SharesByStatus()), content_type=CONTENT_TYPE_LATEST)


def init_observability(app: Flask) -> None:
    app.before_request(_begin)
    app.after_request(_finish)
    app.add_url_rule("/metrics", "metrics", metrics)
