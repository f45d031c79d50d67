"""Revision trees: which revisions a leaf's branch holds."""


def history(leaf: dict) -> set[str]:
    """Every revision on the leaf's branch, the leaf's own included."""
    revisions = leaf.get("_revisions") or {"start": 0, "ids": []}
    start = revisions["start"]
    return {f"{start - i}-{rev_id}" for i, rev_id in enumerate(revisions["ids"])} | {leaf["_rev"]}
