"""Every /v1 call needs an admin bearer token; the probes and the docs do not."""

import pytest

from tests.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.fallback  # also run on pouchdb-server

V1_CALLS = [
    ("GET", "/v1/databases"),
    ("POST", "/v1/databases"),
    ("GET", "/v1/databases/5b1f0c7e-2d4a-4c8e-9a51-0c6f3e2b7a10"),
    ("DELETE", "/v1/databases/5b1f0c7e-2d4a-4c8e-9a51-0c6f3e2b7a10"),
    ("GET", "/v1/shares"),
    ("POST", "/v1/shares"),
    ("GET", "/v1/shares/x"),
    ("PATCH", "/v1/shares/x"),
    ("DELETE", "/v1/shares/x"),
]
BAD_AUTHORIZATION = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer wrong-token-wrong-token",
    f"Bearer {ADMIN_TOKEN}x",
    f"Bearer {ADMIN_TOKEN[:-1]}",
    f"Basic {ADMIN_TOKEN}",
    ADMIN_TOKEN,
]


@pytest.mark.parametrize(("method", "path"), V1_CALLS)
@pytest.mark.parametrize("authorization", BAD_AUTHORIZATION)
def test_v1_refuses_anything_but_an_admin_token(app, method, path, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = app.test_client().open(path, method=method, headers=headers, json={})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_scheme_is_case_insensitive(app):
    headers = {"Authorization": f"bearer {ADMIN_TOKEN}"}
    assert app.test_client().get("/v1/databases", headers=headers).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json", "/docs"])
def test_probes_and_docs_need_no_token(app, path):
    assert app.test_client().get(path).status_code == 200


def test_unknown_paths_are_problems_too(client):
    response = client.get("/v2/nothing")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
