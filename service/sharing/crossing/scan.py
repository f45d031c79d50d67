"""Reading the docs of a user database whose `_id` starts with a prefix, page by page."""

import json
from collections.abc import Iterator

from service.couch import CouchClient

PAGE_SIZE = 500


def docs_with_prefix(couch: CouchClient, db: str, prefix: str) -> Iterator[dict]:
    """Yield each live doc whose `_id` starts with `prefix`, with its `_conflicts`."""
    params = {
        "include_docs": "true",
        "conflicts": "true",
        "limit": str(PAGE_SIZE),
        "startkey": json.dumps(prefix),
        "endkey": json.dumps(prefix + "\ufff0"),
    }
    while True:
        rows = couch.get(db, "_all_docs", params=params)["rows"]
        for row in rows:
            doc = row.get("doc")
            if doc and row["id"].startswith(prefix):
                yield doc
        if len(rows) < PAGE_SIZE:
            return
        params = {**params, "startkey": json.dumps(rows[-1]["id"]), "skip": "1"}
