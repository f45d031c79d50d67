"""The Sharing Broker: shares Inventory app data between two CouchDB databases."""
