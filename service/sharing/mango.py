"""Evaluates the Mango subset the broker writes, for checks the broker runs itself.

Supported: implicit AND, `$and`, `$or`, `$not`, `$nor`; on a field `$eq` (or a literal), `$ne`,
`$in`, `$nin`, `$gt`, `$gte`, `$lt`, `$lte` (numbers), `$exists`, `$type`, `$regex`,
`$size`, `$all` and `$elemMatch`, with CouchDB's meaning: a condition on a missing field is
false but for `$exists: false`. Any other operator raises, so a selector this module cannot
judge is never judged wrongly. Tests check it against the real Mango engine.
"""

import operator
import re

_MISSING = object()
_ORDER = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}
_TYPES = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def matches(selector: dict, doc: dict) -> bool:
    """Whether `doc` matches `selector`."""
    return all(_match_entry(key, condition, doc) for key, condition in selector.items())


def _match_entry(key: str, condition: object, doc: dict) -> bool:
    if key == "$or":
        return any(matches(sub, doc) for sub in condition)
    if key == "$and":
        return all(matches(sub, doc) for sub in condition)
    if key == "$not":
        return not matches(condition, doc)
    if key == "$nor":
        return not any(matches(sub, doc) for sub in condition)
    if key.startswith("$"):
        raise ValueError(f"unsupported combinator {key}")
    return _match_value(_lookup(doc, key), condition)


def _lookup(doc: dict, path: str) -> object:
    value: object = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _match_value(value: object, condition: object) -> bool:
    if not (isinstance(condition, dict) and any(k.startswith("$") for k in condition)):
        return value is not _MISSING and _equal(value, condition)
    return all(_apply(op, arg, value) for op, arg in condition.items())


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
