"""What a transform can fail with."""

from __future__ import annotations


class TransformError(ValueError):
    """A transform that failed: it raised, did not import, or returned a bad value."""


class RequestValueError(ValueError):
    """A request value that is missing or of the wrong type (the caller's mistake)."""
