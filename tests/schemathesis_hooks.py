"""Hooks for the served Schemathesis run (`SCHEMATHESIS_HOOKS=tests.schemathesis_hooks`)."""

import uuid

import schemathesis

from service.api.idempotency import HEADER, KEY


@schemathesis.hook
def before_call(context, case, kwargs):
    """A fresh `Idempotency-Key` for each call that sends a valid one.

    Schemathesis draws keys from a small space, so two different requests often carry the
    same key, and the broker rightly answers 422. That answer depends on an earlier call,
    which no schema can say, so it would pass for a schema-valid request being refused.
    Invalid keys are left as drawn: their 400 is what the run checks. The keys' own
    behaviour is tested in `test_idempotency.py`.
    """
    key = (case.headers or {}).get(HEADER)
    if isinstance(key, str) and KEY.fullmatch(key):
        case.headers[HEADER] = (uuid.uuid4().hex + key)[:200]


# Refusals of schema-valid requests that the spec cannot foresee, each with its reason:
# (status, the one field named, or a prefix of it ending in "."; words of the detail).
EXCUSED = (
    # A stale ETag: whether one is current depends on earlier calls.
    (412, None, "the share changed since it was read"),
    # `role` applies to `database`: OpenAPI cannot tie one parameter to another.
    (422, "role", "role needs a database"),
    # Server names are the deployment's own, not the spec's.
    (422, "server", "no server is named"),
    # Two fields that must differ: OpenAPI cannot say so either.
    (422, "recipient", "owner and recipient must be different databases"),
    # Cursors are the server's to give: one of the right shape may still not be one.
    (422, "since", "not a cursor"),
    # Collection ids are the owner's data, as ids of shares are (those get 404).
    (422, "collections", "not collections of the owner's database"),
    # The spec gives a rule's `where` its top level; the Mango subset below it is
    # described in words and checked by the broker.
    (422, "rules.", ""),
)


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keep every failure but a schema-valid request refused for a reason in `EXCUSED`, and
    a share read after its DELETE.

    DELETE on a share revokes it, or leaves it: the record stays readable as `revoked`,
    with its events, so that both parties can see what happened to it.
    """
    if failure.code == "ST301":  # a deleted resource still there
        return not case.path.startswith("/v1/shares/")
    if failure.code != "ST202" or response is None:  # ST202: schema-valid request rejected
        return True
    try:
        problem = response.json()
    except ValueError:
        return True
    errors = problem.get("errors") or {}
    field = next(iter(errors)) if len(errors) == 1 else None
    return not any(_excuses(entry, response.status_code, field, problem) for entry in EXCUSED)


def _excuses(entry: tuple, status: int, field: str | None, problem: dict) -> bool:
    excused_status, excused_field, words = entry
    if status != excused_status or words not in problem.get("detail", ""):
        return False
    if excused_field and excused_field.endswith("."):
        return bool(field) and field.startswith(excused_field)
    return field == excused_field
