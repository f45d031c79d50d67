"""Evaluates the Mango subset the broker writes, for checks the broker runs itself.

Supported: implicit AND, `$and`, `$or`, `$not`, `$nor`; on a field `$eq` (or a literal), `$ne`,
`$in`, `$nin`, `$gt`, `$gte`, `$lt`, `$lte` (numbers), `$exists`, `$type`, `$regex`,
`$size`, `$all` and `$elemMatch`, with CouchDB's meaning: a condition on a missing field is
false but for `$exists: false`, negated or not (CouchDB pushes negations down to the fields),
and a path through a value that is not an object meets no condition at all. Any other
operator raises, so a selector this module cannot judge is never judged wrongly. Tests check
it against the real Mango engine.
"""

import operator
import re

_MISSING = object()
_BAD_PATH = object()
_ORDER = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}
_TYPES = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def matches(selector: dict, doc: dict, negated: bool = False) -> bool:
    """Whether `doc` matches `selector` (or, `negated`, its negation).

    CouchDB pushes a negation down to the field conditions (De Morgan) before it matches,
    so a negated condition is still false on a missing field, but for `$exists`.
    """
    results = (_match_entry(key, condition, doc, negated) for key, condition in selector.items())
    return any(results) if negated else all(results)


def _match_entry(key: str, condition: object, doc: dict, negated: bool) -> bool:
    if key in ("$or", "$and"):
        results = (matches(sub, doc, negated) for sub in condition)
        return any(results) if (key == "$or") != negated else all(results)
    if key == "$not":
        return matches(condition, doc, not negated)
    if key == "$nor":  # not (A or B): not A and not B
        results = (matches(sub, doc, not negated) for sub in condition)
        return any(results) if negated else all(results)
    if key.startswith("$"):
        raise ValueError(f"unsupported combinator {key}")
    return _match_value(_lookup(doc, key), condition, negated)


def _lookup(doc: dict, path: str) -> object:
    """The value at `path`; `_MISSING` where an object lacks the key, `_BAD_PATH` where
    the path runs through anything but an object (no index is a number here)."""
    value: object = doc
    for part in path.split("."):
        if not isinstance(value, dict):
            return _BAD_PATH
        if part not in value:
            return _MISSING
        value = value[part]
    return value


def _match_value(value: object, condition: object, negated: bool = False) -> bool:
    if not (isinstance(condition, dict) and any(k.startswith("$") for k in condition)):
        condition = {"$eq": condition}
    if value is _BAD_PATH:  # CouchDB: no condition holds, not even a negated one
        return False
    if not negated:
        return all(_apply(op, arg, value) for op, arg in condition.items())
    if value is _MISSING:  # of the negated conditions, only `$exists: false` holds
        return condition.get("$exists") is True
    return not all(_apply(op, arg, value) for op, arg in condition.items())


def _apply(op: str, arg: object, value: object) -> bool:
    if op == "$exists":
        return (value is not _MISSING) is arg
    if value is _MISSING:
        return False
    if op == "$eq":
        return _equal(value, arg)
    if op == "$ne":
        return not _equal(value, arg)
    if op in ("$in", "$nin"):
        values = value if isinstance(value, list) else [value]
        found = any(_equal(v, a) for v in values for a in arg)
        return found if op == "$in" else not found
    if op in _ORDER:
        return _TYPES["number"](value) and _ORDER[op](value, arg)
    if op == "$type":
        return _TYPES[arg](value)
    if op == "$regex":
        return isinstance(value, str) and re.search(arg, value, re.ASCII) is not None
    if op == "$size":
        return isinstance(value, list) and len(value) == arg
    if op == "$all":
        return isinstance(value, list) and all(any(_equal(v, a) for v in value) for a in arg)
    if op == "$elemMatch":
        return isinstance(value, list) and any(_match_value(v, arg) for v in value)
    raise ValueError(f"unsupported operator {op}")


def _equal(value: object, other: object) -> bool:
    """JSON equality: `true` is not `1`, `1` is `1.0`."""
    if isinstance(value, bool) or isinstance(other, bool):
        return isinstance(value, bool) and isinstance(other, bool) and value == other
    return value == other
