"""The admin CLI, end to end: gunicorn serving the broker, pouchdb-server behind it."""

import json
import os

import requests

from service.cli import main
from tests.conftest import ADMIN_TOKEN
from tests.consistency import DB_SHARING
from tests.helpers import wait_for
from tests.servers.admin import free_port
from tests.servers.demo import ALICE, BOB


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_register_share_patch_and_revoke(live_broker, couch, dbs, capsys):
    for name in (dbs["alice"], dbs["bob"]):
        code, out, _ = run(capsys, "databases", "register", name, "--json")
        assert code == 0 and json.loads(out)["database"] == name
    code, out, _ = run(capsys, "databases", "list")
    assert code == 0 and ALICE in out and BOB in out

    code, out, _ = run(
        capsys,
        "shares",
        "create",
        "--owner",
        ALICE,
        "--recipient",
        BOB,
        "--access",
        "read",
        "--collection",
        "c0ll-uuid-1",
        "--json",
    )
    share = json.loads(out)
    assert code == 0 and share["status"] == "active"

    code, out, _ = run(capsys, "shares", "patch", share["id"], "--access", "read-write", "--json")
    assert code == 0 and json.loads(out)["access"] == "read-write"
    code, out, _ = run(capsys, "shares", "list", "--database", ALICE)
    assert code == 0 and share["id"] in out and "read-write" in out

    def state() -> str:
        _, out, _ = run(capsys, "shares", "show", share["id"], "--json")
        return json.loads(out)["replications"][0]["replication_status"]["state"]

    # Served, it runs on change: a run shows `running`, then `idle` until the next one.
    live = ("running", "idle") if couch.replicates else ("unknown",)
    assert wait_for(lambda: state() in live, "a live state from CouchDB's scheduler")
    code, out, _ = run(capsys, "shares", "revoke", share["id"])
    assert code == 0 and "revoked" in out
    code, _, err = run(capsys, "databases", "remove", BOB)
    assert code == 0 and "removed" in err


def test_refusals_exit_1_with_the_problem_on_stderr(live_broker, capsys):
    code, out, err = run(capsys, "databases", "register", "no-such-db")
    assert (code, out) == (1, "")
    assert err.startswith("sharing-broker: 404 ") and "no-such-db" in err
    code, _, err = run(capsys, "databases", "register", "some-db", "--server", "mars")
    assert code == 1 and "422" in err and "mars" in err
    code, _, err = run(capsys, "shares", "show", "00000000-0000-4000-8000-000000000000")
    assert code == 1 and "404" in err
    code, _, err = run(
        capsys, "shares", "create", "--owner", "x", "--recipient", "y", "--access", "read"
    )
    assert code == 1 and err.count("Not a valid Configuration UUID") == 2  # once per field


def test_json_may_come_before_or_after_the_command(live_broker, dbs, capsys):
    run(capsys, "databases", "register", dbs["alice"])
    for argv in (["--json", "databases", "list"], ["databases", "list", "--json"]):
        code, out, _ = run(capsys, *argv)
        assert code == 0 and json.loads(out)[0]["database"] == dbs["alice"]


def test_a_wrong_token_exits_1(live_broker, capsys, monkeypatch):
    monkeypatch.setenv("BROKER_TOKEN", "not-the-admin-token")
    code, _, err = run(capsys, "databases", "list")
    assert code == 1 and "401" in err


def test_an_unreachable_broker_exits_3(capsys, monkeypatch):
    monkeypatch.setenv("BROKER_TOKEN", ADMIN_TOKEN)
    code, _, err = run(capsys, "databases", "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 3 and "cannot reach" in err


def test_no_token_exits_2(capsys, monkeypatch):
    monkeypatch.delenv("BROKER_TOKEN", raising=False)
    code, _, err = run(capsys, "databases", "list")
    assert code == 2 and "BROKER_TOKEN" in err


def test_serve_writes_json_access_logs_without_credentials(live_broker, couch):
    url = os.environ["BROKER_URL"]
    requests.get(f"{url}/healthz", headers={"X-Request-ID": "req-42"}, timeout=5)
    refused = requests.get(f"{url}/v1/databases", auth=("someone", "canary-pass-77"), timeout=5)
    live_broker.stop()
    out, err = live_broker.output()
    logs = out + err
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    health = next(line for line in lines if line["path"] == "/healthz")
    assert health["status"] == "200" and health["request_id"] == "req-42"
    # A request that sent no id is logged with the one generated for it, as answered.
    generated = next(line for line in lines if line["path"] == "/v1/databases")
    assert generated["request_id"] == refused.headers["X-Request-ID"] != "-"
    assert "canary-pass-77" not in logs
    assert ADMIN_TOKEN not in logs


def test_metrics_add_up_across_gunicorn_workers(live_broker):
    url = os.environ["BROKER_URL"]
    for _ in range(6):
        requests.get(f"{url}/healthz", timeout=5)
    text = requests.get(f"{url}/metrics", timeout=5).text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith('sharing_broker_http_requests_total{endpoint="/healthz"')
    )
    assert float(line.rsplit(" ", 1)[1]) >= 6


def test_rules_with_a_dry_run_then_a_preview(live_broker, dbs, capsys):
    for name in (dbs["alice"], dbs["bob"]):
        run(capsys, "databases", "register", name)
    rules = '[{"type": "item", "where": {"data.item_type": "container"}}]'
    create = ["shares", "create", "--owner", ALICE, "--recipient", BOB, "--access", "read"]
    create += ["--collection", "c0ll-uuid-1", "--rules", rules]

    code, out, _ = run(capsys, *create, "--dry-run")
    assert code == 0
    assert out.strip() == (
        "4 docs would leave the owner's database: collection 1, image 1, item 1, item_image 1"
    )
    code, out, _ = run(capsys, "shares", "list", "--database", ALICE)
    assert (code, out) == (0, "")

    code, out, _ = run(capsys, *create, "--json")
    share = json.loads(out)
    assert code == 0 and share["rules"] == json.loads(rules)
    code, out, _ = run(capsys, "shares", "preview", share["id"], "--json")
    assert code == 0 and json.loads(out)["total"] == 4


def test_reconcile_names_the_share_and_the_part_it_repaired(live_broker, couch, dbs, capsys):
    for name in (dbs["alice"], dbs["bob"]):
        assert run(capsys, "databases", "register", name)[0] == 0
    code, out, _ = run(
        capsys, "shares", "create", "--owner", ALICE, "--recipient", BOB, "--access", "read-write"
    )
    share_id = out.split()[0]
    couch.delete_doc(dbs["alice"], DB_SHARING)

    code, out, _ = run(capsys, "reconcile")

    assert code == 0
    assert (
        f"repaired: missing, changed or failed part (share id {share_id}; part db_sharing)" in out
    )


def test_webhooks_are_added_listed_and_removed(live_broker, capsys):
    url = "http://backend.example/hooks"
    code, out, err = run(capsys, "webhooks", "add", url, "--kind", "left")
    assert code == 0 and "secret, shown this once: whsec_" in err, err
    webhook_id = out.split()[0]
    code, out, _ = run(capsys, "webhooks", "list")
    assert code == 0 and f"{webhook_id}  {url}  left  active" in out
    assert "whsec_" not in out
    code, _, err = run(capsys, "webhooks", "remove", webhook_id)
    assert code == 0 and run(capsys, "webhooks", "show", webhook_id)[0] == 1
