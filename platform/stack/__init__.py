"""The local stack: a PostgreSQL 15 cluster with TimescaleDB and a Mosquitto broker, on ports of their own.

``eldercare stack up|down|status`` drives it for development and ``make demo``; the test suite starts a
throwaway one with the same code.
"""
