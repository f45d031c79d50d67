"""Metrics, request ids, JSON logs and the periodic reconcile."""

import glob
import json
import logging
import os
import tempfile
import threading
import time

import requests

from service.logs import JsonFormatter, RequestIdFilter
from service.sharing.lifecycle.reconcile import reconcile_every
from tests.conftest import ADMIN_TOKEN
from tests.helpers import create_share, replicator_docs
from tests.servers.broker import BrokerProcess
from tests.servers.demo import ALICE, BOB


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample in a Prometheus exposition."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{{{wanted}}}")


def test_metrics_count_requests_couchdb_calls_shares_and_repairs(client, couch, registered):
    share = create_share(client, access="read-write", collections=["c0ll-uuid-1"])
    client.get("/v1/shares/00000000-0000-4000-8000-000000000000")
    path = f"_replicator/sharing-broker-{share['id']}-owner-to-recipient"
    couch.request("DELETE", path, params={"rev": couch.get(path)["_rev"]})
    client.post("/v1/reconcile")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=1.0.0; charset=utf-8"
    text = response.get_data(as_text=True)
    created = metric(
        text,
        "sharing_broker_http_requests_total",
        endpoint="/v1/shares",
        method="POST",
        status="201",
    )
    assert created >= 1
    missing = metric(
        text,
        "sharing_broker_http_requests_total",
        endpoint="/v1/shares/<share_id>",
        method="GET",
        status="404",
    )
    assert missing >= 1
    written = {
        operation: metric(
            text,
            "sharing_broker_couchdb_requests_total",
            operation=operation,
            outcome="201",
            server="default",
        )
        for operation in ("POST _replicator/_bulk_docs", "PUT _replicator/{doc}")
    }
    assert all(count >= 1 for count in written.values())  # created together, restored alone
    assert metric(text, "sharing_broker_shares", status="active") == 1
    assert (
        metric(
            text, "sharing_broker_reconcile_repairs_total", kind="missing, changed or failed part"
        )
        >= 1
    )
    assert "sharing_broker_couchdb_request_seconds_bucket" in text


def test_a_request_id_is_echoed_or_made(client):
    echoed = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id <script>"})
    assert len(made.headers["X-Request-ID"]) == 32
    assert len(client.get("/healthz").headers["X-Request-ID"]) == 32


def test_log_lines_are_json_with_the_request_id(app, client, caplog):
    formatter, request_ids = JsonFormatter(), RequestIdFilter()
    caplog.set_level(logging.WARNING)
    client.post(
        "/v1/shares",
        json={**{"owner": ALICE, "recipient": BOB}, "access": "read"},
        headers={"X-Request-ID": "req-77"},
    )
    with app.test_request_context(headers={"X-Request-ID": "req-77"}):
        from flask import g

        g.request_id = "req-77"
        record = logging.LogRecord(
            "service.x", logging.WARNING, __file__, 1, "it %s", ("broke",), None
        )
        request_ids.filter(record)
    line = json.loads(formatter.format(record))
    assert line == {**line, "level": "WARNING", "message": "it broke", "request_id": "req-77"}


def test_served_logs_are_json_and_hold_no_secret(live_broker, couch, settings):
    url = os.environ["BROKER_URL"]
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Request-ID": "req-5"}
    requests.post(
        f"{url}/v1/databases", json={"database": "no-such-db"}, headers=headers, timeout=5
    )
    live_broker.stop()
    out, err = live_broker.output()
    logged = out + err
    assert couch.admin[1] not in logged and ADMIN_TOKEN not in logged
    json_lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert all("request_id" in line for line in json_lines)


def test_the_periodic_loop_repairs_drift(app, client, couch, registered):
    share = create_share(client)
    path = f"_replicator/sharing-broker-{share['id']}-owner-to-recipient"
    couch.request("DELETE", path, params={"rev": couch.get(path)["_rev"]})
    stop = threading.Event()
    loop = threading.Thread(
        target=reconcile_every, args=(0.1, app.extensions["sharing_broker"].reconciler, stop)
    )
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while not replicator_docs(couch, share["id"]) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        loop.join()
    assert len(replicator_docs(couch, share["id"])) == 1


def test_serving_leaves_no_metrics_directory_behind(couch, settings):
    """gunicorn's workers share a directory for their metrics; it goes when serving stops."""
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()  # noqa: S108
    before = set(glob.glob(f"{shm}/broker-metrics-*"))
    broker = BrokerProcess(couch, settings.state_db, ADMIN_TOKEN)
    made = set(glob.glob(f"{shm}/broker-metrics-*")) - before
    broker.stop()
    assert len(made) == 1
    assert not made & set(glob.glob(f"{shm}/broker-metrics-*"))
