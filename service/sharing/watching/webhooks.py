"""Webhooks: the feed of share events pushed to the endpoints admins register.

Deliveries are signed as Standard Webhooks sign them (`webhook-id`, `webhook-timestamp`,
`webhook-signature`: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`). Each
endpoint keeps its place in the feed in its record; one replica at a time delivers (a
lease), so each event goes out once per endpoint, and again only when an answer was lost
(at least once: receivers go by `webhook-id`).

An endpoint that fails is tried again later, each time twice as late (from 5 s up to 10
min); after `MAX_FAILURES` failures in a row it is paused, and stays so until an admin
resumes it. Its secret is derived from the record key and the endpoint's id, shown once
when it is registered, and never stored.
"""

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from service.couch import CouchError, CouchUnavailable, DocumentConflict
from service.metrics import WEBHOOK_DELIVERIES, WEBHOOKS_PAUSED
from service.sharing.core.errors import ConflictError, NotFoundError
from service.sharing.core.model import now_iso
from service.sharing.core.store import StateStore
from service.sharing.watching.feed import Entry, EventFeed, Reader

log = logging.getLogger(__name__)
MAX_FAILURES = 8  # in a row, then paused: about 20 minutes of tries
FIRST_RETRY_SECONDS = 5
LONGEST_RETRY_SECONDS = 600
BATCH = 50  # events one endpoint is sent in one pass
CHANGE_TRIES = 3  # an admin's change against the delivery pass's own writes
SEND_TIMEOUT = (3.05, 5.0)  # connect, read: a slow receiver holds up only its own deliveries


@dataclass
class Webhook:
    """A registered endpoint and where it stands in the feed."""

    id: str
    url: str
    kinds: list[str] | None  # None: every kind
    since: str
    created_at: str = field(default_factory=now_iso)
    state: str = "active"  # or "paused"
    failures: int = 0
    next_attempt_at: str | None = None
    last_error: str | None = None
    last_delivered_at: str | None = None
    rev: str | None = None

    @staticmethod
    def doc_id(webhook_id: str) -> str:
        return f"webhook:{webhook_id}"

    def to_doc(self) -> dict:
        doc = {"_id": self.doc_id(self.id), "type": "webhook", **self.__dict__}
        del doc["rev"]
        if self.rev:
            doc["_rev"] = self.rev
        return doc

    @classmethod
    def from_doc(cls, doc: dict) -> "Webhook":
        names = set(cls.__dataclass_fields__) - {"rev"}
        return cls(**{k: doc[k] for k in names if k in doc}, rev=doc.get("_rev"))

    def due(self) -> bool:
        return self.state == "active" and (
            self.next_attempt_at is None or self.next_attempt_at <= now_iso()
        )


class Webhooks:
    """Registering, listing, resuming and removing endpoints."""

    def __init__(self, store: StateStore, feed: EventFeed, key: str):
        self.store = store
        self.feed = feed
        self._key = key.encode()

    def add(self, url: str, kinds: list[str] | None) -> tuple[Webhook, str]:
        """Register an endpoint from now on; return it and its secret (shown this once)."""
        _, now = self.feed.page(Reader(admin=True), "now", 1)
        webhook = Webhook(str(uuid.uuid4()), url, sorted(kinds) if kinds else None, now)
        self.save(webhook)
        return webhook, self.secret(webhook.id)

    def secret(self, webhook_id: str) -> str:
        """The endpoint's signing secret, in Standard Webhooks' `whsec_` form."""
        derived = hmac.new(self._key, f"webhook:{webhook_id}".encode(), hashlib.sha256)
        return "whsec_" + base64.b64encode(derived.digest()).decode()

    def get(self, webhook_id: str) -> Webhook:
        doc = self.store.get_sealed_doc(Webhook.doc_id(webhook_id))
        if doc is None:
            raise NotFoundError(f"no webhook {webhook_id}")
        return Webhook.from_doc(doc)

    def all(self) -> list[Webhook]:
        return [Webhook.from_doc(doc) for doc in self.store.sealed_docs("webhook")]

    def remove(self, webhook_id: str) -> None:
        def delete(webhook: Webhook) -> None:
            doc_id = Webhook.doc_id(webhook.id)
            self.store.couch.delete(self.store.db, doc_id, params={"rev": webhook.rev})

        self._change(webhook_id, delete)

    def resume(self, webhook_id: str) -> Webhook:
        """Deliver again at once, from where it stopped."""

        def resume(webhook: Webhook) -> None:
            webhook.state, webhook.failures, webhook.next_attempt_at = "active", 0, None
            self.save(webhook)

        return self._change(webhook_id, resume)

    def _change(self, webhook_id: str, change: Callable[[Webhook], None]) -> Webhook:
        """Apply `change` to the endpoint as it stands, reading it again when a delivery
        pass recorded its place in between; 409 if that keeps happening."""
        for _ in range(CHANGE_TRIES):
            webhook = self.get(webhook_id)
            try:
                change(webhook)
                return webhook
            except DocumentConflict:
                continue
        raise ConflictError(f"webhook {webhook_id} kept changing under deliveries; try again")

    def save(self, webhook: Webhook) -> None:
        """Write the endpoint's record; it takes the new revision."""
        webhook.rev = self.store.put_sealed_doc(webhook.to_doc())


class WebhookDelivery:
    """One pass: each due endpoint is sent the events it has not had, in order."""

    def __init__(self, webhooks: Webhooks, session: requests.Session | None = None):
        self.webhooks = webhooks
        self.session = session or requests.Session()
        self.endpoints = 0  # registered, at the last pass

    def run(self) -> int:
        """Deliver what is due; return how many events went out."""
        sent = 0
        endpoints = self.webhooks.all()
        self.endpoints = len(endpoints)
        WEBHOOKS_PAUSED.set(sum(w.state == "paused" for w in endpoints))
        for webhook in endpoints:
            if not webhook.due():
                continue
            try:
                sent += self._deliver(webhook)
            except DocumentConflict:  # removed or resumed meanwhile: read again next pass
                log.info("webhook %s changed during its delivery; read again", webhook.id)
        return sent

    def _deliver(self, webhook: Webhook) -> int:
        entries, last = self.webhooks.feed.page(Reader(admin=True), webhook.since, BATCH)
        sent = 0
        for entry in entries:
            if webhook.kinds is None or entry.event.kind in webhook.kinds:
                error = self._send(webhook, entry)
                if error:
                    self._failed(webhook, error)
                    return sent
                sent += 1
                webhook.last_delivered_at = now_iso()
            webhook.since = entry.seq
        if entries or webhook.failures:
            webhook.since = last if len(entries) < BATCH else webhook.since
            webhook.failures, webhook.next_attempt_at, webhook.last_error = 0, None, None
            self.webhooks.save(webhook)
        return sent

    def _send(self, webhook: Webhook, entry: Entry) -> str | None:
        """POST one event; the error in a few words, or None when it was taken."""
        body = json.dumps(payload(entry), separators=(",", ":"))
        headers = sign(self.webhooks.secret(webhook.id), entry.event_id, body)
        try:
            response = self.session.post(
                webhook.url, data=body.encode(), headers=headers, timeout=SEND_TIMEOUT
            )
        except requests.RequestException as exc:
            WEBHOOK_DELIVERIES.labels("unreachable").inc()
            return f"unreachable: {type(exc).__name__}"
        if 200 <= response.status_code < 300:
            WEBHOOK_DELIVERIES.labels("delivered").inc()
            return None
        WEBHOOK_DELIVERIES.labels("refused").inc()
        return f"answered {response.status_code}"

    def _failed(self, webhook: Webhook, error: str) -> None:
        webhook.failures += 1
        webhook.last_error = error
        if webhook.failures >= MAX_FAILURES:
            webhook.state = "paused"
            log.warning("webhook %s paused after %d failures: %s", webhook.id, MAX_FAILURES, error)
        wait = min(FIRST_RETRY_SECONDS * 2 ** (webhook.failures - 1), LONGEST_RETRY_SECONDS)
        webhook.next_attempt_at = now_iso(wait)
        try:
            self.webhooks.save(webhook)
        except (CouchError, CouchUnavailable):
            log.warning("webhook %s: its failure was not recorded; it is tried again", webhook.id)


def payload(entry: Entry) -> dict:
    """What an endpoint receives: the event as the feed gives it, typed `share.<kind>`,
    or `database.<kind>` for one about a registration."""
    kind = entry.event.kind.replace(" ", "_")
    about = "database" if entry.event.database else "share"
    return {"type": f"{about}.{kind}", "timestamp": entry.event.at, "data": entry.public()}


def sign(secret: str, message_id: str, body: str, timestamp: int | None = None) -> dict:
    """The Standard Webhooks headers of one delivery."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = hmac.new(key, f"{message_id}.{stamp}.{body}".encode(), hashlib.sha256)
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(signed.digest()).decode(),
    }


def deliver_every(seconds: float, delivery: WebhookDelivery, lease, stop) -> None:
    """While this process holds `lease` and until `stop`: a delivery pass as soon as the
    feed's follower sees an event, and every `seconds` for retries that fall due. Without
    an endpoint, or the lease, it only looks again every `seconds`."""
    try:
        feed = delivery.webhooks.feed
        while not stop.is_set():
            mark = None
            try:
                if lease.hold():
                    mark = feed.arrivals()  # what arrives during the pass: another pass
                    delivery.run()
            except (CouchError, CouchUnavailable) as exc:
                log.warning("webhook delivery pass failed: %s", exc)
            if mark is not None and delivery.endpoints and not feed.stopping.is_set():
                feed.next_arrival(mark, seconds)  # a stopped feed would not wait at all
            else:
                stop.wait(seconds)
    finally:
        lease.drop()
