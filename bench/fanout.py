"""One owner write fanned out to many recipients: what the write guard costs.

Every write into a guarded database runs its `validate_doc_update` in one of CouchDB's
JavaScript processes, of which it keeps at most `[query_server_config] os_process_limit`
(100 by default). The same fan-out by hand, with no guard, is the floor.
"""

import statistics
import threading
import time

from bench.stack import Broker, collection_of, item, item_id
from tests.servers.admin import AdminHttp

SETTING = ("query_server_config", "os_process_limit")


def recipient_dbs(couch: AdminHttp, prefix: str, count: int, first_uuid: int) -> list[str]:
    """`count` empty Inventory databases with configs of their own."""
    made = []
    for n in range(count):
        name = f"{prefix}-{n:03d}"
        config_uuid = f"00000000-0000-4000-8000-{first_uuid + n:012d}"
        couch.create_db(name, [{"_id": "0000-config", "uuid": config_uuid}])
        couch.add_member(name, name)
        made.append(name)
    return made


def arrival_times(couch: AdminHttp, dbs: list[str], doc_id: str, write) -> list[float]:
    """Call `write()`, and return how long after it the doc reached each database (ms):
    one long-polled `_changes` per database, each opened before the write."""
    arrived: dict[str, float] = {}
    ready = threading.Barrier(len(dbs) + 1)

    def watch(db: str) -> None:
        since = couch.get(f"{db}/_changes", since="now")["last_seq"]
        ready.wait()
        while db not in arrived:
            body = {"doc_ids": [doc_id]}
            params = {"feed": "longpoll", "since": since, "filter": "_doc_ids", "timeout": 60000}
            response = couch.request("POST", f"{db}/_changes", params=params, json=body).json()
            if response["results"]:
                arrived[db] = time.monotonic()
            since = response["last_seq"]

    threads = [threading.Thread(target=watch, args=(db,)) for db in dbs]
    for thread in threads:
        thread.start()
    ready.wait()
    start = time.monotonic()
    write()
    for thread in threads:
        thread.join(timeout=120)
    return [(arrived[db] - start) * 1000 for db in dbs if db in arrived]


def fan_out(couch: AdminHttp, owner: tuple[str, str], targets: list[str], key: str) -> dict:
    """Once replication to every target runs: the time the owner's next item takes to
    reach them, the median database and the last."""
    owner_db, owner_uuid = owner
    couch.put(f"{owner_db}/{item_id(owner_uuid, key + '-warm')}", item(owner_uuid, key + "-warm"))
    wait_everywhere(couch, targets, item_id(owner_uuid, key + "-warm"))
    times = arrival_times(
        couch,
        targets,
        item_id(owner_uuid, key),
        lambda: couch.put(f"{owner_db}/{item_id(owner_uuid, key)}", item(owner_uuid, key)),
    )
    return {
        "median": statistics.median(times),
        "last": max(times),
        "arrived": len(times),
        "of": len(targets),
    }


def wait_everywhere(couch: AdminHttp, dbs: list[str], doc_id: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    waiting = list(dbs)
    while waiting and time.monotonic() < deadline:
        waiting = [
            db for db in waiting if couch.request("GET", f"{db}/{doc_id}").status_code != 200
        ]
        time.sleep(0.2)
    if waiting:
        raise RuntimeError(f"{doc_id} reached {len(dbs) - len(waiting)} of {len(dbs)} databases")


def broker_fan_out(
    couch: AdminHttp, broker: Broker, owner: tuple[str, str], count: int, limits: list[int]
) -> dict[int, dict]:
    """Read-only shares from `owner` to `count` new databases, measured at each JavaScript
    process limit in `limits`; the shares are revoked after."""
    targets = recipient_dbs(couch, "bench-fan-guarded", count, 10_000)
    shares = []
    for db in targets:
        registered = broker.call("POST", "/v1/databases", json={"database": db}).json()
        body = {
            "owner": owner[1],
            "recipient": registered["config_uuid"],
            "access": "read",
            "collections": [collection_of(owner[1])],
        }
        shares.append(broker.call("POST", "/v1/shares", json=body).json()["id"])
    found = {}
    try:
        for limit in limits:
            couch.set_config(*SETTING, str(limit))
            found[limit] = fan_out(couch, owner, targets, f"fan-guarded-{limit}")
    finally:
        for share_id in shares:
            broker.call("DELETE", f"/v1/shares/{share_id}", retries=3)
        # Only now: CouchDB keeps the processes it has until they idle out (300 s), and
        # while they are above its limit every validate_doc_update waits for one.
        couch.set_config(*SETTING, "100")
    return found


def floor_fan_out(couch: AdminHttp, owner: tuple[str, str], count: int) -> dict:
    """The same fan-out by hand: admin replications, no guard."""
    targets = recipient_dbs(couch, "bench-fan-floor", count, 20_000)
    owner_db, owner_uuid = owner
    selector = {"type": "item", "data.collection_id": collection_of(owner_uuid)}
    basic = {"username": couch.admin[0], "password": couch.admin[1]}
    ids = []
    for db in targets:
        doc = {
            "source": {"url": f"{couch.url}/{owner_db}", "auth": {"basic": basic}},
            "target": {"url": f"{couch.url}/{db}", "auth": {"basic": basic}},
            "continuous": True,
            "selector": selector,
        }
        ids.append(couch.put(f"_replicator/floor-fan-{db}", doc)["rev"])
    try:
        return fan_out(couch, owner, targets, "fan-floor")
    finally:
        for db, rev in zip(targets, ids, strict=True):
            couch.delete(f"_replicator/floor-fan-{db}", rev=rev)
