"""Evaluates the Mango subset that `selectors` writes, for checks the broker runs itself.

Supported: implicit AND, `$or`, `$and`, `$in`, `$regex`, `$elemMatch`, `$eq` and literal
equality on dotted paths. Any other operator raises, so a selector this module cannot judge
is never judged wrongly. Tests check it against the real Mango engine.
"""

import re

_MISSING = object()


def matches(selector: dict, doc: dict) -> bool:
    """Whether `doc` matches `selector`."""
    return all(_match_entry(key, condition, doc) for key, condition in selector.items())


def _match_entry(key: str, condition: object, doc: dict) -> bool:
    if key == "$or":
        return any(matches(sub, doc) for sub in condition)
    if key == "$and":
        return all(matches(sub, doc) for sub in condition)
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
        return value is not _MISSING and value == condition
    return all(_apply(op, arg, value) for op, arg in condition.items())


def _apply(op: str, arg: object, value: object) -> bool:
    if value is _MISSING:
        return False
    if op == "$eq":
        return value == arg
    if op == "$in":
        return value in arg
    if op == "$regex":
        return isinstance(value, str) and re.search(arg, value) is not None
    if op == "$elemMatch":
        return isinstance(value, list) and any(_match_value(v, arg) for v in value)
    raise ValueError(f"unsupported operator {op}")
