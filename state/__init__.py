"""Storage behind small interfaces: event log, read model, change feed. SQLite and Redis each."""
