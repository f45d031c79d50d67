"""The feed of share events and its webhooks (#28), on Apache CouchDB, through one broker
process under gunicorn:

1. latency: from an operation's answer to its event on a waiting long poll, p50 and p95
   (goal: p95 at most 1 s);
2. readers: `--readers` long polls held open at once, each a reader of its own share, as
   many users' backends would wait: the broker's memory and CPU, and CouchDB's requests a
   second, against one reader under the same operations (goal: no more requests for many
   readers than for one);
3. webhooks: from an operation's answer to its delivery, p95; then the receiver down for
   `--down` seconds while events happen, and every one of them delivered, once, after it
   is back.

    python -m bench.feed [--readers 1000] [--samples 30] [--down 60] [--results F]
"""

import argparse
import datetime
import json
import selectors
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import requests

from bench.run import percentile
from bench.scale import broker_processes
from bench.stack import ADMIN_TOKEN, make_databases, report_arguments, start_couchdb, stop_couchdb
from tests.servers.admin import free_port
from tests.servers.broker import BrokerProcess

STATE_DB = "sharing_broker_feed"
WINDOW_SECONDS = 30  # each readers window; a reader's long poll times out within it
READER_TIMEOUT_MS = 20_000
OPERATION_EVERY = 2.0  # seconds between operations while readers wait
GOAL_P95_MS = 1000


class Stack:
    """CouchDB, four Inventory databases and one broker process that may hold `readers`
    long polls (threads, connections and waits raised to match)."""

    def __init__(self, readers: int, disposable: bool):
        self.couch = start_couchdb(disposable)
        dbs = make_databases(self.couch, 4)
        self.footprint = [STATE_DB, *(name for name, _ in dbs)]
        self.broker = BrokerProcess(
            self.couch,
            STATE_DB,
            ADMIN_TOKEN,
            BROKER_WORKERS="1",
            BROKER_THREADS=str(readers + 16),
            BROKER_MAX_WAITING=str(readers + 8),
            BROKER_WORKER_CONNECTIONS=str(readers + 64),
        )
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        # A fresh connection per call: gunicorn drops an idle one after 2 s, and a POST on
        # a dropped connection is not sent again.
        self.http.headers["Connection"] = "close"
        for name, _ in dbs:
            self.call("POST", "/v1/databases", json={"database": name})
        self.owner, self.recipient = dbs[0][1], dbs[1][1]

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = self.http.request(method, self.broker.url + path, timeout=120, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else {}

    def operate(self) -> tuple[list[tuple[str, str]], list[float]]:
        """An invitation, then its refusal: two events; their keys and answer times."""
        body = {"owner": self.owner, "recipient": self.recipient, "access": "read"}
        share = self.call("POST", "/v1/shares", json={**body, "auto_accept": False})
        invited = time.monotonic()
        time.sleep(0.2)  # each event finds the readers waiting again
        self.call("POST", f"/v1/shares/{share['id']}/decline")
        declined = time.monotonic()
        return [(share["id"], "invited"), (share["id"], "declined")], [invited, declined]

    def couch_requests(self) -> int:
        """CouchDB's count of HTTP requests so far (this read included)."""
        stats = self.couch.get("_node/_local/_stats/couchdb/httpd/requests")
        return int(stats["value"])

    def stop(self) -> None:
        self.broker.stop()
        stop_couchdb(self.couch, self.footprint)


def spread(values: list[float]) -> str:
    return f"p50 {percentile(values, 50):.0f} ms, p95 {percentile(values, 95):.0f} ms"


def latency(stack: Stack, samples: int) -> list[str]:
    """A reader long-polls the admin's feed; each operation's event is timed from the
    operation's answer to the reader's answer."""
    since = stack.call("GET", "/v1/events", params={"since": "now"})["next_since"]
    arrived: dict[tuple[str, str], float] = {}
    stop = threading.Event()

    def follow() -> None:
        nonlocal since
        reader = requests.Session()
        reader.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        while not stop.is_set():
            query = {"since": since, "feed": "longpoll", "timeout": 5000, "limit": 200}
            page = reader.get(f"{stack.broker.url}/v1/events", params=query, timeout=60).json()
            now = time.monotonic()
            for event in page["items"]:
                arrived.setdefault((event.get("share_id"), event["kind"]), now)
            since = page["next_since"]

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    time.sleep(1)
    answered: dict[tuple[str, str], float] = {}
    for _ in range(samples):
        keys, times = stack.operate()
        answered.update(zip(keys, times, strict=True))
        time.sleep(0.3)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not answered.keys() <= arrived.keys():
        time.sleep(0.1)
    stop.set()
    follower.join(timeout=10)
    gaps = [(arrived[k] - answered[k]) * 1000 for k in answered if k in arrived]
    first = sum(gap < 0 for gap in gaps)
    waits = [max(gap, 0.0) for gap in gaps]
    p95 = percentile(waits, 95)
    verdict = "PASS" if p95 <= GOAL_P95_MS and len(gaps) == len(answered) else "FAIL"
    return [
        f"- operation answered → its event on a waiting long poll, {len(answered)} events:"
        f" {spread(waits)}, max {max(waits):.0f} ms; goal p95 ≤ {GOAL_P95_MS} ms: {verdict}"
        f" ({first} came before the operation's own answer, counted as 0;"
        f" {len(answered) - len(gaps)} never came)",
    ]


class HeldPolls:
    """`count` long polls held open on raw sockets, each for a share of its own (none of
    them exists, so no event is for any): when one answers, it comes back from the
    `next_since` it was given, as a reader following the feed does."""

    def __init__(self, url: str, count: int):
        parts = urlsplit(url)
        self.address = (parts.hostname, parts.port)
        self.selector = selectors.DefaultSelector()
        self.readers = [str(uuid.uuid4()) for _ in range(count)]
        self.answers = 0
        self.failures = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def open(self) -> None:
        for share in self.readers:
            self._ask(share, "now")
        self.thread.start()

    def _ask(self, share: str, since: str) -> None:
        query = urlencode(
            {"share": share, "since": since, "feed": "longpoll", "timeout": READER_TIMEOUT_MS}
        )
        request = (
            f"GET /v1/events?{query} HTTP/1.1\r\nHost: {self.address[0]}\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\nConnection: close\r\n\r\n"
        )
        connection = socket.create_connection(self.address)
        connection.sendall(request.encode())
        connection.setblocking(False)
        self.selector.register(connection, selectors.EVENT_READ, (share, bytearray()))

    def _run(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.selector.select(timeout=0.5):
                share, received = key.data
                try:
                    chunk = key.fileobj.recv(65536)
                except OSError as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    chunk = b""
                if chunk:
                    received += chunk
                    continue
                self.selector.unregister(key.fileobj)
                key.fileobj.close()
                self._answered(share, bytes(received))

    def _answered(self, share: str, response: bytes) -> None:
        head, _, body = response.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            self.failures += 1
            return
        self.answers += 1
        if not self.stop.is_set():
            self._ask(share, json.loads(body)["next_since"])

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()


def readers(stack: Stack, count: int) -> list[str]:
    """CouchDB's requests a second and the broker's memory and CPU, with one reader and
    with `count`, each window under the same operations."""
    broker = broker_processes(stack.broker)
    found = {}
    for held in (1, count):
        polls = HeldPolls(stack.broker.url, held)
        polls.open()
        time.sleep(3 + held / 100)  # every reader's first page is read, and it waits
        rss_before = broker.rss_mib()
        cpu_before = broker.cpu_seconds()
        requests_before, started = stack.couch_requests(), time.monotonic()
        operations = 0
        while time.monotonic() - started < WINDOW_SECONDS:
            stack.operate()
            operations += 1
            time.sleep(OPERATION_EVERY)
        seconds = time.monotonic() - started
        rate = (stack.couch_requests() - requests_before - 1) / seconds
        cpu = 100 * (broker.cpu_seconds() - cpu_before) / seconds
        found[held] = (rate, broker.rss_mib(), rss_before, cpu, polls.answers, polls.failures)
        polls.close()
        time.sleep(2)
    one, many = found[1], found[count]
    verdict = "PASS" if many[0] <= one[0] * 1.1 + 1 else "FAIL"
    return [
        f"- {count} long polls held on one broker process ({WINDOW_SECONDS} s, an operation"
        f" every {OPERATION_EVERY:g} s, each reader's poll timing out after"
        f" {READER_TIMEOUT_MS // 1000} s and coming back): CouchDB {many[0]:.1f} requests/s"
        f" against {one[0]:.1f} with one reader; goal no more: {verdict}",
        f"- broker process with {count} waiting: {many[1]:.0f} MiB resident"
        f" ({one[1]:.0f} MiB with one), {many[3]:.0f}% of a core ({one[3]:.0f}% with one);"
        f" {many[4]} answers at timeouts, {many[5]} failed",
    ]


class Receiver:
    """A backend's webhook endpoint on a fixed port, that can go down and come back."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.received: dict[tuple[str, str], list[float]] = {}
        self.server: ThreadingHTTPServer | None = None
        self.up()

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = (body["data"].get("share_id"), body["data"]["kind"])
                receiver.received.setdefault(key, []).append(time.monotonic())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, keys: list, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if set(keys) <= self.received.keys():
                return True
            time.sleep(0.2)
        return False


def webhooks(stack: Stack, samples: int, down_seconds: float) -> list[str]:
    receiver = Receiver()
    hook = stack.call("POST", "/v1/webhooks", json={"url": receiver.url})
    # The delivering replica finds a new endpoint within its 5 s pass: not timed.
    receiver.wait_for(stack.operate()[0], 60)
    answered: dict[tuple[str, str], float] = {}
    for _ in range(samples):
        keys, times = stack.operate()
        answered.update(zip(keys, times, strict=True))
        time.sleep(0.3)
    receiver.wait_for(list(answered), 60)
    waits = [
        max(receiver.received[k][0] - t, 0) * 1000
        for k, t in answered.items()
        if k in receiver.received
    ]
    lines = [
        f"- operation answered → its webhook delivered, {len(answered)} events:"
        f" {spread(waits)}, max {max(waits):.0f} ms ({len(answered) - len(waits)} never came)"
    ]
    receiver.down()
    went_down = time.monotonic()
    during: list[tuple[str, str]] = []
    while time.monotonic() - went_down < min(20.0, down_seconds):
        during += stack.operate()[0]
        time.sleep(1)
    time.sleep(max(0.0, down_seconds - (time.monotonic() - went_down)))
    receiver.up()
    back = time.monotonic()
    complete = receiver.wait_for(during, 15 * 60)
    caught_up = max(receiver.received[k][-1] for k in during if k in receiver.received) - back
    twice = sum(
        len(receiver.received[k]) > 1 for k in [*answered, *during] if k in receiver.received
    )
    state = stack.call("GET", f"/v1/webhooks/{hook['id']}")
    receiver.down()
    verdict = "PASS" if complete and not twice else "FAIL"
    lines.append(
        f"- receiver down {down_seconds:g} s while {len(during)} events happened: all"
        f" delivered {caught_up:.0f} s after it was back ({'every one' if complete else 'NOT all'},"
        f" {twice} delivered twice; the endpoint {state['state']}, {state['failures']}"
        f" failures in a row now): {verdict}"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readers", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=30, help="operations per latency figure")
    parser.add_argument("--down", type=float, default=60, help="seconds the receiver is down")
    report_arguments(parser)
    args = parser.parse_args()
    stack = Stack(args.readers, args.disposable)
    report = [
        f"### The feed of events ({datetime.date.today().isoformat()}, Apache CouchDB"
        f" {stack.couch.version}, one broker process)"
    ]
    print(report[0], flush=True)
    try:
        for phase in (
            lambda: latency(stack, args.samples),
            lambda: readers(stack, args.readers),
            lambda: webhooks(stack, args.samples, args.down),
        ):
            lines = phase()
            print("\n".join(lines), flush=True)
            report += lines
    finally:
        stack.stop()
    if args.results:
        Path(args.results).write_text("\n".join(report) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
