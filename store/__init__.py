"""The database and nothing else: SQL over SQLite through sqlite-utils, one ordered
migrations module, the hash-chained evidence and the derived tables."""
