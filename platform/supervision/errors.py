"""Errors of the supervision services, each with its structured fields; the API turns them into Problems."""

from __future__ import annotations

from eldercare.platform.api.errors import FieldError, Problem


def invalid(field: str, reason: str) -> Problem:
    """A 422 about one field of the request, in the API's one error shape."""
    return Problem(422, "the request is not valid", [FieldError(field=field, reason=reason)])


def forbidden(what: str) -> Problem:
    return Problem(403, what)
