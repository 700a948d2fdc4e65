"""The indexer's tables as the services read them: tables.py (names, row classes, columns) and
queries.py (the shared SELECTs). The indexer's migrations are the schema."""
