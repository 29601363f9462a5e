"""The job store: tables, the database engine, hashing, the lifecycle and its queries."""
