"""The base of errors that are counted and reported, not just raised."""

from __future__ import annotations


class ReasonedError(Exception):
    """An error with a stable `reason` token (a metric label, an alert field) and a free `detail`."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


INTERNAL_ERROR = "internal_error"
"""The reason of an entry (Rekor or CT) whose decoding raised an exception no decoder raises for bad
input: a bug here or in a library, which a hostile entry may find (monitor/analysis.py)."""
