"""End-to-end figures: how long until a doc crosses, timed alike for the broker and the floor."""

import threading
import time
from collections.abc import Callable

from bench.stack import item, item_id
from tests.servers.admin import AdminHttp

POLL_SECONDS = 0.01


def arrived(couch: AdminHttp, db: str, doc_id: str) -> bool:
    return couch.request("GET", f"{db}/{doc_id}").status_code == 200


def until_arrival(couch: AdminHttp, db: str, doc_id: str, seconds: float = 60.0) -> float:
    """Wait for the doc in `db`; return the monotonic time it was first seen there."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if arrived(couch, db, doc_id):
            return time.monotonic()
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"{doc_id} did not reach {db} in {seconds:.0f}s")


def first_doc_ms(couch: AdminHttp, share: Callable[[], None], pair: tuple, key: str) -> float:
    """From the start of `share()` until an item the owner wrote before is in the
    recipient's database."""
    (owner_db, owner), (recipient_db, _) = pair
    couch.put(f"{owner_db}/{item_id(owner, key)}", item(owner, key))
    start = time.monotonic()
    share()
    return (until_arrival(couch, recipient_db, item_id(owner, key)) - start) * 1000


def write_crosses_ms(
    couch: AdminHttp, owner_db: str, recipient_db: str, owner: str, key: str
) -> float:
    """From an owner's write of a new item until it is in the recipient's database."""
    start = time.monotonic()
    couch.put(f"{owner_db}/{item_id(owner, key)}", item(owner, key))
    return (until_arrival(couch, recipient_db, item_id(owner, key)) - start) * 1000


def revoke_tail_ms(couch: AdminHttp, pair: tuple, revoke: Callable[[], None], key: str) -> float:
    """How long after the revoke started a new owner item still crossed: the owner writes
    one every 20 ms from just before the revoke for two seconds, then, after three more,
    the last one found at the recipient tells. 0 when none written after the start did."""
    (owner_db, owner), (recipient_db, _) = pair
    written: list[tuple[str, float]] = []
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            name = f"{key}-{n}"
            couch.put(f"{owner_db}/{item_id(owner, name)}", item(owner, name))
            written.append((item_id(owner, name), time.monotonic()))
            n += 1
            time.sleep(0.02)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.2)
    start = time.monotonic()
    revoke()
    time.sleep(2.0)
    stop.set()
    thread.join()
    time.sleep(3.0)
    crossed = [at for doc_id, at in written if at >= start and arrived(couch, recipient_db, doc_id)]
    return (max(crossed) - start) * 1000 if crossed else 0.0
