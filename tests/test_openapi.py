"""The committed spec is the one the code generates, and it documents problem responses."""

import re
from pathlib import Path

import yaml

from service.cli import main
from service.cli.server import openapi_yaml

COMMITTED = Path(__file__).resolve().parents[1] / "openapi" / "openapi.yaml"


def test_committed_spec_matches_the_code():
    assert COMMITTED.read_text(encoding="utf-8") == openapi_yaml(), (
        "openapi/openapi.yaml is stale: run `sharing-broker openapi write`"
    )


def test_check_command_fails_on_drift(tmp_path):
    stale = tmp_path / "openapi.yaml"
    stale.write_text("openapi: 3.1.0\n")
    assert main(["openapi", "write", "--check", "--output", str(stale)]) == 1
    assert main(["openapi", "write", "--output", str(stale)]) == 0
    assert main(["openapi", "write", "--check", "--output", str(stale)]) == 0


def test_spec_is_openapi_3_1_with_summaries_and_problem_errors():
    spec = yaml.safe_load(openapi_yaml())
    assert spec["openapi"] == "3.1.0"
    for path, operations in spec["paths"].items():
        for method in set(operations) & {"get", "post", "patch", "delete"}:
            assert operations[method].get("summary"), (method, path)
    problem = spec["components"]["responses"]["UNPROCESSABLE_ENTITY"]["content"]
    assert list(problem) == ["application/problem+json"]


def test_the_spec_offers_users_their_couchdb_credentials_beside_the_admin_token():
    spec = yaml.safe_load(openapi_yaml())
    schemes = spec["components"]["securitySchemes"]
    assert schemes["adminToken"] == {**schemes["adminToken"], "type": "http", "scheme": "bearer"}
    assert schemes["couchdbBasic"]["scheme"] == "basic"
    assert (schemes["couchdbSession"]["in"], schemes["couchdbSession"]["name"]) == (
        "cookie",
        "AuthSession",
    )
    assert spec["security"] == [{"adminToken": []}, {"couchdbBasic": []}, {"couchdbSession": []}]


def test_swagger_ui_is_served_by_the_broker_not_a_cdn(client):
    page = client.get("/docs").get_data(as_text=True)
    scripts = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "docs/assets/swagger-ui-bundle.js" in scripts
    assert not [url for url in scripts if "//" in url]  # nothing from another host
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        response = client.get(f"/docs/assets/{asset}")
        assert response.status_code == 200 and len(response.data) > 1000, asset
    assert client.get("/docs/assets/../../pyproject.toml").status_code == 404
