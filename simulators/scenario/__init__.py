"""Scenario files: loading with line numbers, expectations, claims."""
