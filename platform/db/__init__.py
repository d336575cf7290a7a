"""The database: versioned forward-only migrations and the reference data they need.

Only the standard library here: ``eldercare``'s command line reads :data:`SCRUB_LOCK_TIMEOUT` while it builds its
parser (``cli.py``), before any command has run."""

SCRUB_LOCK_TIMEOUT = "5s"
"""How long ``migrate.scrub`` waits for a table's lock before it gives up (rather than queue every writer behind it)."""
