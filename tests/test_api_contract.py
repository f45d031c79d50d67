"""Schemathesis over the spec, in process: no 5xx, and every response matches its
documented schema. The served run, with every check, is in `test_api_served.py`."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.fallback  # also run on pouchdb-server

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def api_schema(app, registered):
    """The live spec of an app whose server holds Alice's and Bob's databases; its long
    polls answer within a second, whatever `timeout` the examples ask for."""
    app.extensions["sharing_broker"].feed.longest_wait = 1
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_contract(case):
    case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, checks=CHECKS)
