"""Hypothesis strategies: random rules within the allowed subset, and docs to judge."""

from hypothesis import strategies as st

FIELDS = ["data.name", "data.item_type", "data.tags", "data.count", "data.nested.level"]
WORDS = ["a", "ab", "b", "Family", "container", "x y"]
PATTERNS = ["^a", "b$", "a.b", "[ab]+", "^(Fam|con)", "x y", "\\d", "^[a-z]*$", "amil"]

scalars = st.one_of(st.sampled_from(WORDS), st.integers(-3, 3), st.booleans())
scalar_lists = st.lists(scalars, min_size=1, max_size=3)
numbers = st.integers(-3, 3)


def _value_condition(include_list_ops: bool = True):
    ops = [
        scalars,
        st.builds(lambda v: {"$eq": v}, scalars),
        st.builds(lambda v: {"$ne": v}, scalars),
        st.builds(lambda v: {"$in": v}, scalar_lists),
        st.builds(lambda v: {"$nin": v}, scalar_lists),
        st.builds(lambda o, n: {o: n}, st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), numbers),
        st.builds(lambda p: {"$regex": p}, st.sampled_from(PATTERNS)),
    ]
    if include_list_ops:
        ops += [
            st.builds(lambda b: {"$exists": b}, st.booleans()),
            st.builds(lambda n: {"$size": n}, st.integers(0, 2)),
            st.builds(lambda v: {"$all": v}, scalar_lists),
        ]
    return st.one_of(ops)


element_conditions = _value_condition(include_list_ops=False).filter(
    lambda c: isinstance(c, dict) and "$regex" not in c
)
conditions = st.one_of(
    _value_condition(), st.builds(lambda c: {"$elemMatch": c}, element_conditions)
)
field_selectors = st.builds(lambda f, c: {f: c}, st.sampled_from(FIELDS), conditions)
selectors = st.recursive(
    field_selectors,
    lambda inner: st.one_of(
        st.builds(lambda parts: {"$and": parts}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda parts: {"$or": parts}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda part: {"$not": part}, inner),
    ),
    max_leaves=6,
)
rules = st.lists(
    st.builds(
        lambda t, w: {"type": t, "where": w}, st.sampled_from(["collection", "item"]), selectors
    ),
    min_size=1,
    max_size=3,
)

# Doc values: every JSON type, arrays of non-null scalars (pouchdb-find reads a null array
# element differently from CouchDB for `$nin`), and no field path through an array: the
# corners where pouchdb-find departs from CouchDB, whose semantics the compilers follow.
values = st.one_of(
    scalars,
    st.none(),
    st.lists(scalars, max_size=3),
    st.fixed_dictionaries({}, optional={"level": scalars}),
)
datas = st.fixed_dictionaries(
    {},
    optional={
        "name": values,
        "item_type": values,
        "tags": values,
        "count": values,
        # Not a falsy scalar: pouchdb-find reads `data.nested.level` of `nested: false` as
        # `false`, where CouchDB finds no such field.
        "nested": st.one_of(
            st.fixed_dictionaries({}, optional={"level": values}), scalars.filter(bool)
        ),
    },
)
