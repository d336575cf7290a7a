"""Errors of the supervision services, each with its structured fields; the API turns them into Problems."""

from __future__ import annotations

from eldercare.platform.api.errors import Problem


def forbidden(what: str) -> Problem:
    return Problem(403, what)
