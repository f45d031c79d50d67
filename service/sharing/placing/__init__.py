"""What a share places in CouchDB, and bringing it in line: the replicator docs and their
status, the share users with their passwords and roles, databases made ready for them
(`_security`'s member role, the fixed write guard),
withdrawals from a recipient's database, and `parts.converge`, which writes and removes
them in a safe order, server by server. It may import `crossing` and the core.
"""
