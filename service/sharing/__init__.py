"""The sharing domain: selectors, replicator docs, the share lifecycle."""
