"""The two ways a log fails a client (http.py says which is which): unavailable, or lying.

A module of its own, importing nothing, so that what parses a log's answers (answers.py, the decode
process's reading of Rekor v1 answers) needs no HTTP client.
"""

from __future__ import annotations


class LogUnavailableError(Exception):
    """The log could not be reached, or kept failing (429, 5xx, timeouts) until the retries ran out."""

    def __init__(self, url: str, cause: str) -> None:
        super().__init__(f"{url}: log unavailable: {cause}")
        self.url = url
        self.cause = cause


class LogProtocolError(Exception):
    """The log answered something an honest log never answers; retrying would not help."""

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(f"{url}: {problem}")
        self.url = url
        self.problem = problem


class UnexpectedStatusError(LogProtocolError):
    """An HTTP status that is neither success, 404, 429 nor 5xx (400, 413, 422, a redirect...)."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(url, f"unexpected HTTP status {status}")
        self.status = status
