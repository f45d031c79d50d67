"""Two Inventory databases built from the reference fixture: Alice shares, Bob receives."""

import copy
import json
from pathlib import Path

# A copy of ../shared/reference/inventory-docs.fixture.json, so a clone is self-contained.
FIXTURE = Path(__file__).resolve().parents[1] / "data" / "inventory-docs.fixture.json"
ALICE = "5b1f0c7e-2d4a-4c8e-9a51-0c6f3e2b7a10"
BOB = "9e8d7c6b-1111-4a2b-8c3d-222233334444"


def fixture_docs() -> list[dict]:
    """Every doc of the reference fixture: one of each kind, Alice's."""
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def alice_docs() -> list[dict]:
    """The fixture without its db_sharing doc (the broker writes that), plus a second
    collection with an item and a picture, which stays unshared in most tests."""
    docs = [d for d in fixture_docs() if d.get("type") != "db_sharing"]
    by_id = {d["_id"]: d for d in docs}
    second = copy.deepcopy(by_id["collection-c0ll-uuid-1"])
    second["_id"], second["data"]["name"] = "collection-c0ll-uuid-2", "Garage"
    item = copy.deepcopy(by_id["item-it3m-uuid-1"])
    item["_id"], item["data"]["collection_id"] = "item-it3m-uuid-2", "c0ll-uuid-2"
    link = copy.deepcopy(by_id["item_image-it3m-uuid-1-1mg-uuid-1"])
    link["_id"] = "item_image-it3m-uuid-2-1mg-uuid-2"
    link["data"].update(
        item_id="it3m-uuid-2", image_id="1mg-uuid-2", _item_collection_id="c0ll-uuid-2"
    )
    image = copy.deepcopy(by_id["zz20-image-1mg-uuid-1"])
    image["_id"] = "zz20-image-1mg-uuid-2"
    image["data"].update(_item_ids=["it3m-uuid-2"], _item_collection_ids=["c0ll-uuid-2"])
    return [*docs, second, item, link, image]


def bob_docs() -> list[dict]:
    """Bob's own configuration and one collection of his."""
    return [
        {"_id": "0000-config", "uuid": BOB, "collections_order": ["b0b-coll-1"]},
        {
            "_id": "collection-b0b-coll-1",
            "type": "collection",
            "data": {"name": "Books", "config_uuid": BOB, "items_order": []},
            "created_at": 1700000000000,
            "updated_at": 1700000000000,
        },
    ]
