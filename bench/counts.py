"""Counting the CouchDB requests the broker sends for one API call, in-process."""

from contextlib import contextmanager
from unittest import mock

from service.couch import CouchClient


@contextmanager
def counting():
    """Yield a list that fills with one entry per CouchDB request sent inside the block."""
    sent: list[str] = []
    original = CouchClient.request

    def request(client, method, segments, **kwargs):
        segments = tuple(segments)
        sent.append(f"{method} {'/'.join(segments)}")
        return original(client, method, segments, **kwargs)

    with mock.patch.object(CouchClient, "request", request):
        yield sent
