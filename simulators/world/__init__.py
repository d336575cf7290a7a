"""A world of homes: planned from a seed, registered through the API."""
