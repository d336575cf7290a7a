"""The database: versioned forward-only migrations and the reference data they need."""
