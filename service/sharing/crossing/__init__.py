"""What crosses from one database to the other: the custom rules and the Mango subset they
are written in, the selectors of the replicator docs, previews of what would go, and
prefix scans. It may import the core only.
"""
