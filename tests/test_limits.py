"""Bodies are bounded: too large is 413, nested too deeply is 400; never a 500."""

import pytest

from service.api.limits import MAX_BODY_BYTES, nesting
from tests.servers.demo import ALICE, BOB

pytestmark = pytest.mark.fallback  # also run on pouchdb-server

JSON = "application/json"


def test_a_body_over_the_limit_is_413(client):
    body = '{"database": "' + "a" * (MAX_BODY_BYTES + 10) + '"}'
    response = client.post("/v1/databases", data=body, content_type=JSON)
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"


def test_a_deep_array_bomb_is_400(client):
    body = "[" * 100_000 + "]" * 100_000
    response = client.post("/v1/shares", data=body, content_type=JSON)
    assert response.status_code == 400
    assert "nests deeper" in response.get_json()["detail"]


def test_deeply_nested_objects_in_a_rule_are_400(client, registered):
    where = "{}"
    for _ in range(5_000):
        where = '{"$not": ' + where + "}"
    body = (
        f'{{"owner": "{ALICE}", "recipient": "{BOB}", "access": "read",'
        f' "rules": [{{"type": "item", "where": {where}}}]}}'
    )
    response = client.post("/v1/shares", data=body, content_type=JSON)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


def test_brackets_inside_strings_do_not_count(client):
    response = client.post("/v1/databases", json={"database": "[{" * 100})
    assert response.status_code == 422
    assert nesting(b'{"a": "[[[\\"[[", "b": [1]}') == 2


def test_a_body_that_is_not_json_is_415(client):
    response = client.post("/v1/databases", data="database=inventory-alice")
    assert response.status_code == 415
    assert "application/json" in response.get_json()["detail"]
    form = client.post("/v1/shares", data={"owner": ALICE}, content_type="multipart/form-data")
    assert form.status_code == 415


def test_a_method_not_allowed_says_which_are(client):
    """RFC 9110: a 405 carries `Allow`; the body stays a problem."""
    response = client.put("/v1/shares")
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}
