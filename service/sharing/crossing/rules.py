"""Custom rules: a safe subset of Mango over `data.` fields, parsed once, judged twice.

A rule is `{"type": "collection" | "item", "where": <selector>}`. The parsed selector
compiles to a Mango selector for the replicator docs; the write guard judges the rule as
given with the JavaScript evaluator below, so a share user's writes are judged by exactly
the rules that replicate.

Both follow CouchDB's semantics, written so pouchdb-find agrees: a condition on a
missing field is false but for `$exists: false`; `$ne` and `$nin` need the field to exist;
`$gt`, `$gte`, `$lt` and `$lte` compare numbers with numbers only. Values are strings,
numbers, booleans, or lists of them. A `$regex` is short and has no quantified groups or
look-arounds, so it means the same in JavaScript and in CouchDB's PCRE, and its
backtracking stays polynomial in the length of the text (not exponential).
"""

import re
from dataclasses import dataclass

from service.sharing.core.errors import InvalidRequest

RULE_TYPES = ("collection", "item")
MAX_NODES = 64
MAX_DEPTH = 6
MAX_LIST = 100
MAX_REGEX = 64
MAX_STRING = 1000
MAX_RULES = 20
FIELD = re.compile(r"data(\.[A-Za-z_][A-Za-z0-9_]{0,63}){1,4}")
_REGEX_CHARS = re.compile(r"[A-Za-z0-9 _\-.,:;#@/^$*+?|()\[\]\\]*")
_REGEX_ESCAPES = re.compile(r"\\[^dw.\-\\()\[\]^$*+?|/#@ ]")
_COMPARISONS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_SCALAR_OPS = ("$eq", "$ne", *_COMPARISONS, "$regex")
_LIST_OPS = ("$in", "$nin", "$all")


@dataclass(frozen=True)
class Test:
    """One operator on a value: `op` and its argument; `$elemMatch` holds tests."""

    op: str
    arg: object


@dataclass(frozen=True)
class Node:
    """`$and`, `$or` or `$not` over nodes, or `field` with the tests its value must pass."""

    kind: str
    parts: tuple = ()
    field: str = ""
    tests: tuple[Test, ...] = ()


@dataclass(frozen=True)
class Rule:
    """A parsed rule, with the `where` it was parsed from."""

    type: str
    where: Node
    source: dict


def parse_rules(raw: object, path: str = "rules") -> list[Rule]:
    """Validate and parse a share's rules; anything outside the subset is a 422 naming it."""
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("must be a non-empty list of rules", path)
    if len(raw) > MAX_RULES:
        raise InvalidRequest(f"at most {MAX_RULES} rules", path)
    rules = []
    for index, rule in enumerate(raw):
        at = f"{path}.{index}"
        if not isinstance(rule, dict) or set(rule) != {"type", "where"}:
            raise InvalidRequest("a rule is an object with exactly `type` and `where`", at)
        if rule["type"] not in RULE_TYPES:
            raise InvalidRequest(f"type must be one of {', '.join(RULE_TYPES)}", f"{at}.type")
        budget = [MAX_NODES]
        where = _selector(rule["where"], f"{at}.where", 0, budget)
        rules.append(Rule(rule["type"], where, rule["where"]))
    return rules


def _selector(raw: object, path: str, depth: int, budget: list[int]) -> Node:
    if depth > MAX_DEPTH:
        raise InvalidRequest(f"nested deeper than {MAX_DEPTH}", path)
    if not isinstance(raw, dict) or not raw:
        raise InvalidRequest("a selector must be a non-empty object", path)
    parts = tuple(_entry(key, value, path, depth, budget) for key, value in raw.items())
    return parts[0] if len(parts) == 1 else Node("$and", parts)


def _entry(key: str, value: object, path: str, depth: int, budget: list[int]) -> Node:
    at = f"{path}.{key}"
    budget[0] -= 1
    if budget[0] < 0:
        raise InvalidRequest(f"more than {MAX_NODES} conditions", at)
    if key in ("$and", "$or"):
        if not isinstance(value, list) or not value:
            raise InvalidRequest(f"{key} takes a non-empty list of selectors", at)
        return Node(
            key, tuple(_selector(v, f"{at}.{i}", depth + 1, budget) for i, v in enumerate(value))
        )
    if key == "$not":
        return Node("$not", (_selector(value, at, depth + 1, budget),))
    if key.startswith("$"):
        raise InvalidRequest(f"operator {key} is not allowed here", at)
    if not FIELD.fullmatch(key):
        raise InvalidRequest("a rule may name only fields under `data.`, like `data.name`", at)
    return Node("field", field=key, tests=_tests(value, at, depth))


def _tests(condition: object, path: str, depth: int) -> tuple[Test, ...]:
    if not isinstance(condition, dict):
        return (Test("$eq", _scalar(condition, path)),)
    if not condition:
        raise InvalidRequest("a condition must name at least one operator", path)
    return tuple(_test(op, arg, f"{path}.{op}", depth) for op, arg in condition.items())


def _test(op: str, arg: object, path: str, depth: int) -> Test:
    if op in _COMPARISONS:
        if isinstance(arg, bool) or not isinstance(arg, int | float):
            raise InvalidRequest(f"{op} compares numbers only", path)
        return Test(op, _scalar(arg, path))  # JavaScript and CouchDB agree below 2^53
    if op in ("$eq", "$ne"):
        return Test(op, _scalar(arg, path))
    if op in _LIST_OPS:
        if not isinstance(arg, list) or not arg or len(arg) > MAX_LIST:
            raise InvalidRequest(f"{op} takes a list of 1 to {MAX_LIST} values", path)
        return Test(op, tuple(_scalar(v, f"{path}.{i}") for i, v in enumerate(arg)))
    if op == "$exists":
        if not isinstance(arg, bool):
            raise InvalidRequest("$exists takes true or false", path)
        return Test(op, arg)
    if op == "$size":
        if isinstance(arg, bool) or not isinstance(arg, int) or not 0 <= arg <= 10_000:
            raise InvalidRequest("$size takes a whole number", path)
        return Test(op, arg)
    if op == "$regex":
        return Test(op, _regex(arg, path))
    if op == "$elemMatch":
        if depth >= MAX_DEPTH:
            raise InvalidRequest(f"nested deeper than {MAX_DEPTH}", path)
        if not isinstance(arg, dict) or not arg or any(not k.startswith("$") for k in arg):
            raise InvalidRequest("$elemMatch takes operators for each element", path)
        tests = tuple(_test(o, a, f"{path}.{o}", depth + 1) for o, a in arg.items())
        if any(t.op in ("$exists", "$size", "$all", "$elemMatch", "$regex") for t in tests):
            raise InvalidRequest(
                "$elemMatch takes $eq, $ne, $in, $nin, $gt, $gte, $lt and $lte", path
            )
        return Test(op, tests)
    raise InvalidRequest(f"operator {op} is not allowed in rules", path)


def _scalar(value: object, path: str) -> object:
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise InvalidRequest(f"strings in rules hold at most {MAX_STRING} characters", path)
        return value
    if isinstance(value, bool) or (isinstance(value, int | float) and abs(value) < 2**53):
        return value
    if isinstance(value, int | float):
        raise InvalidRequest("numbers in rules lie between -2^53 and 2^53", path)
    raise InvalidRequest("values are strings, numbers or booleans", path)


def _regex(pattern: object, path: str) -> str:
    if not isinstance(pattern, str) or not 0 < len(pattern) <= MAX_REGEX:
        raise InvalidRequest(f"$regex takes a pattern of 1 to {MAX_REGEX} characters", path)
    if not _REGEX_CHARS.fullmatch(pattern) or _REGEX_ESCAPES.search(pattern):
        raise InvalidRequest(
            "$regex allows letters, digits, spaces, _ - . , : ; # @ / ^ $ * + ? | ( ) [ ],"
            " a backslash before one of them, and \\d \\w; no quotes or other characters",
            path,
        )
    if "(?" in pattern or re.search(r"\)[*+?]", pattern):
        raise InvalidRequest("$regex allows no look-arounds and no quantified groups", path)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidRequest(f"$regex does not compile: {exc.msg}", path) from None
    return pattern


# Compiling to Mango
#
# pouchdb-find merges the parts of an `$and` into one object, and loses logic doing so:
# a second `$not` replaces the first, two `$or`s are cross-multiplied with terms dropped,
# and two conditions on one field can collapse into one. The compiled selector therefore
# keeps every `$and` to distinct fields, at most one `$or` and at most one `$nor` (every
# negation goes there: not A and not B is `$nor: [A, B]`), and wraps each branch of an
# `$or` or `$nor` in an `$and`, which pouchdb-find normalises. It is the same logic in
# CouchDB, whose semantics the tests hold it to.


def rules_condition(rules: list[Rule], doc_type: str) -> dict | None:
    """One condition a doc of `doc_type` must meet; `None` when no rule names the type.

    Always a single `$or` (of one branch, if need be), so it can join any `$and`.
    """
    wheres = [mango(rule.where) for rule in rules if rule.type == doc_type]
    return {"$or": [_branch(where) for where in _flat("$or", wheres)]} if wheres else None


def mango(node: Node) -> dict:
    if node.kind == "$or":
        return _any([mango(part) for part in node.parts])
    if node.kind == "$and":
        return _all([mango(part) for part in node.parts])
    if node.kind == "$not":
        return {"$nor": [_branch(mango(node.parts[0]))]}
    return _all([_mango_test(node.field, test) for test in node.tests])


def _any(selectors: list[dict]) -> dict:
    flat = _flat("$or", selectors)
    return flat[0] if len(flat) == 1 else {"$or": [_branch(s) for s in flat]}


def _all(selectors: list[dict]) -> dict:
    """An `$and` with distinct fields, one `$or` and one `$nor` at most."""
    parts, negated, fields, has_or = [], [], set(), False
    for selector in _flat("$and", selectors):
        key = next(iter(selector))
        if key == "$nor":
            negated += selector["$nor"]
        elif key == "$or" and has_or:
            negated.append(_branch({"$nor": selector["$or"]}))  # A or B = not nor(A, B)
        elif key in fields:
            negated.append(_branch({"$nor": [_branch(selector)]}))
        else:
            has_or = has_or or key == "$or"
            fields.add(key)
            parts.append(selector)
    if negated:
        parts.append({"$nor": negated})
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _flat(kind: str, selectors: list[dict]) -> list[dict]:
    flat = []
    for selector in selectors:
        flat += selector[kind] if list(selector) == [kind] else [selector]
    return flat


def _branch(selector: dict) -> dict:
    return selector if list(selector) == ["$and"] else {"$and": [selector]}


def _mango_test(field: str, test: Test) -> dict:
    """One field and one test, in a form pouchdb-find and CouchDB judge alike."""
    if test.op == "$nin":  # the field, and none of the values
        not_in = {"$nor": [_branch({field: {"$in": list(test.arg)}})]}
        return {"$and": [{field: {"$exists": True}}, not_in]}
    return {field: _mango_condition(test)}


def _mango_condition(test: Test) -> dict:
    if test.op == "$ne":
        return {"$exists": True, "$ne": test.arg}
    if test.op in _COMPARISONS:
        return {"$type": "number", test.op: test.arg}
    if test.op == "$elemMatch":
        condition = {}
        for inner in test.arg:
            # An element always exists; pouchdb-find fails on `$ne` in `$elemMatch`.
            condition.update(
                {"$nin": [inner.arg]} if inner.op == "$ne" else _mango_condition(inner)
            )
        return {"$elemMatch": condition}
    if test.op in _LIST_OPS:
        return {test.op: list(test.arg)}
    return {test.op: test.arg}


# Judging in JavaScript: the guard reads a share's rules as data (their `where` as given)
# and judges a doc with `rpass`, exactly as CouchDB judges the compiled Mango above. A
# negation is pushed down to the field tests (De Morgan), and a negated test is still false
# on a missing field, but where the compiled test itself asks for the field (`$exists`,
# `$ne`, `$nin`). A path through a value that is not an object meets no test, negated or not.

JS_HELPERS = """
var BAD_PATH = {};
var ASKS_FOR_THE_FIELD = {'$exists': true, '$ne': true, '$nin': true};
function rget(doc, path) {
  var value = doc;
  for (var i = 0; i < path.length; i++) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) { return BAD_PATH; }
    if (!Object.prototype.hasOwnProperty.call(value, path[i])) { return undefined; }
    value = value[path[i]];
  }
  return value;
}
function req(a, b) { return a !== null && typeof a !== 'object' && a === b; }
function rin(v, list) {
  var values = Array.isArray(v) ? v : [v];
  for (var i = 0; i < values.length; i++) {
    for (var j = 0; j < list.length; j++) { if (req(values[i], list[j])) { return true; } }
  }
  return false;
}
function rall(v, list) {
  if (!Array.isArray(v)) { return false; }
  for (var j = 0; j < list.length; j++) { if (!rin(v, [list[j]])) { return false; } }
  return true;
}
function rtest(v, op, arg) {
  switch (op) {
    case '$eq': return req(v, arg);
    case '$ne': return v !== undefined && !req(v, arg);
    case '$gt': return typeof v === 'number' && v > arg;
    case '$gte': return typeof v === 'number' && v >= arg;
    case '$lt': return typeof v === 'number' && v < arg;
    case '$lte': return typeof v === 'number' && v <= arg;
    case '$in': return v !== undefined && v !== null && rin(v, arg);
    case '$nin': return v !== undefined && !rin(v, arg);
    case '$all': return rall(v, arg);
    case '$exists': return arg ? v !== undefined : v === undefined;
    case '$size': return Array.isArray(v) && v.length === arg;
    case '$regex': return typeof v === 'string' && new RegExp(arg).test(v);
    case '$elemMatch':
      if (!Array.isArray(v)) { return false; }
      for (var i = 0; i < v.length; i++) { if (rtests(v[i], arg, false)) { return true; } }
      return false;
  }
  throw({forbidden: 'sharing-broker guard: a rule it cannot judge'});
}
function rtests(v, condition, negated) {
  var tests = condition !== null && typeof condition === 'object' ? condition : {'$eq': condition};
  for (var op in tests) {
    var met = rtest(v, op, tests[op]);
    if (negated) { met = ASKS_FOR_THE_FIELD[op] ? !met : v !== undefined && !met; }
    if (met === negated) { return negated; }
  }
  return !negated;
}
function rmatch(selector, doc, negated) {
  for (var key in selector) {
    var met, value = selector[key];
    if (key === '$and' || key === '$or') {
      var every = (key === '$and') !== negated;
      met = every;
      for (var i = 0; i < value.length; i++) {
        if (rmatch(value[i], doc, negated) !== every) { met = !every; break; }
      }
    } else if (key === '$not') {
      met = rmatch(value, doc, !negated);
    } else {
      var v = rget(doc, key.split('.'));
      met = v !== BAD_PATH && rtests(v, value, negated);
    }
    if (met === negated) { return negated; }
  }
  return !negated;
}
function rpass(rules, type, doc) {
  var named = false;
  for (var i = 0; i < (rules || []).length; i++) {
    if (rules[i].type !== type) { continue; }
    named = true;
    if (rmatch(rules[i].where, doc, false)) { return true; }
  }
  return !named;
}
"""
