"""The share operations, a module per family: `provision` (invite, accept, decline),
`change` (patch, previews, rotate), `revoke`, and `recovery` (resume, repair), on a small
shared base (`base`: audit and the record; `parties`: the databases and the selection,
checked; `placement`: converging the parts). `shares.ShareService` joins them. `reconcile`
finishes and repairs operations; `views` is how a share looks to callers. It may import
`placing`, `crossing` and the core, never `watching`: the wiring hands reconcile a pass of
the forged-branch watch.
"""
