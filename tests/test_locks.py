"""Per-database locks across replicas: a hold that outlasts its lock finds out before it
writes `_security`, which has no revision to fail on."""

import logging
import time

import pytest

from service.couch import CouchUnavailable
from service.sharing.placing.locks import DatabaseLocks

TTL = 3.0  # the lock docs' `until` has whole seconds


@pytest.fixture
def replicas(app):
    """Two replicas' locks on one state database, with a short time to live."""
    store = app.extensions["sharing_broker"].store
    return [DatabaseLocks(store.couch, store.db, ttl=TTL) for _ in range(2)]


def test_a_hold_that_outlived_its_lock_finds_out_before_it_writes(replicas, caplog):
    slow, other = replicas
    with caplog.at_level(logging.WARNING), slow.hold("inventory-x"):
        slow.confirm("inventory-x")  # fresh: nothing to renew
        time.sleep(TTL + 1.1)  # a slow read, retries, waiting for `_security` to settle
        with other.hold("inventory-x"):
            pass  # the lock had expired: the other replica took it over
        with pytest.raises(CouchUnavailable, match="taken over"):
            slow.confirm("inventory-x")
    assert "taken over before its release" in caplog.text


def test_a_hold_that_confirms_keeps_its_lock(replicas):
    slow, other = replicas
    other.wait = TTL / 2  # less than what a lock just renewed has left
    with slow.hold("inventory-y"):
        for _ in range(4):  # twice the time it lives unrenewed
            time.sleep(TTL / 2)
            slow.confirm("inventory-y")
        with (
            pytest.raises(CouchUnavailable, match="held by another replica"),
            other.hold("inventory-y"),
        ):
            pass
