"""The core: the model and its errors, the state store and its seal, registrations, the
servers (sites), who is calling and what they may do, the lease, and small helpers. It
imports nothing of the other packages of the domain, only the CouchDB gateway, settings
and metrics; everything else builds on it.
"""
