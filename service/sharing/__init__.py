"""The sharing domain, in packages that import downward only (CI checks it):

- `broker`: the wiring, which builds everything below from the settings;
- `watching`: what runs in the background: followers, forged branches, rule id lists;
- `lifecycle`: the share operations, reconcile, and how a share looks to callers;
- `placing`: what a share places in CouchDB, and converging it;
- `crossing`: which docs cross: rules, the Mango subset, selectors, previews;
- `core`: the model, errors, the state store, registrations, identity and policy.
"""
