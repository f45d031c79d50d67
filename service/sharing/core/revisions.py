"""Revision trees: which revisions a leaf's branch holds, and which leaf wins."""


def history(leaf: dict) -> set[str]:
    """Every revision on the leaf's branch, the leaf's own included."""
    revisions = leaf.get("_revisions") or {"start": 0, "ids": []}
    start = revisions["start"]
    return {f"{start - i}-{rev_id}" for i, rev_id in enumerate(revisions["ids"])} | {leaf["_rev"]}


def generation(rev: str | None) -> int:
    """The `N` of a revision `N-hash`; 0 for none."""
    return int(rev.split("-", 1)[0]) if rev else 0


def winner(leaves: list[dict]) -> dict:
    """The leaf CouchDB shows every reader."""
    return max(leaves, key=rank)


def rank(leaf: dict) -> tuple:
    """How CouchDB orders leaves: a live one before a deleted one, then the highest
    generation, then the highest hash."""
    number, _, digest = leaf["_rev"].partition("-")
    return (not leaf.get("_deleted"), int(number), digest)


def replayed(rev: str, deleted_leaves: list[str]) -> bool:
    """Whether revision `rev` won only because a later branch was deleted: a deleted leaf
    two or more generations past it.

    Writes extend the winner, so a deleted branch ends at most one generation past the
    winner (a losing branch deleted by reconcile). A leaf grafted back at an earlier
    generation (`new_edits=false`) wins only once every later branch is deleted, and the
    deletion that ends the later branch lies at least two generations past it.
    """
    return any(generation(leaf) >= generation(rev) + 2 for leaf in deleted_leaves)
